"""The node's parameters: declared with descriptors and ranges, validated into plain settings.

Start-only parameters are read-only after start; the others can be changed at
run time (``ros2 param set``) and are validated before they take effect: an
invalid update is refused with the reason and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

from ..postprocess import MaskSettings
from ..uncertainty import SCORES, HeadSettings

DEFAULT_HEAD = HeadSettings()

_P, _I = FloatingPointRange, IntegerRange
# name: (default, description, read_only, range)
PARAMETERS: dict[str, tuple[object, str, bool, object]] = {
    "model": ("", "architecture (gradunc-infer --help lists them); empty: the shipped default", True, None),
    "weights": ("", "weights file (.safetensors or .pth); empty: the shipped default model", True, None),
    "num_classes": (
        0,
        "class count of a .pth checkpoint without metadata; 0: from the weights or model",
        True,
        _I(from_value=0, to_value=65535),
    ),
    "device": ("auto", "auto (CUDA when present), cpu or cuda[:N]; cuda without CUDA fails at start", True, None),
    "cpu_threads": (
        0,
        "PyTorch threads on the CPU; 0: one per core (PyTorch's default)",
        True,
        _I(from_value=0, to_value=256),
    ),
    "precision": ("float32", "network precision: float32, float16 or bfloat16 (scores stay float32)", True, None),
    "fused_head": (
        "auto",
        "auto: the fused Triton head where it runs (CUDA), else plain PyTorch; off; triton (fails without it)",
        True,
        None,
    ),
    "input_size": ("", "network input WIDTHxHEIGHT; empty: what the weights were trained at", True, None),
    "image_topics": (["image"], "camera topics; one ending in /compressed is a CompressedImage", True, None),
    "input_reliability": ("best_effort", "camera QoS: best_effort (sensor data) or reliable", True, None),
    "output_reliability": ("reliable", "output QoS: reliable or best_effort", True, None),
    "score": (DEFAULT_HEAD.score, "score: " + ", ".join(SCORES) + "; higher = more anomalous", False, None),
    "p": (DEFAULT_HEAD.p, "exponent of the gradient norm", False, _P(from_value=0.01, to_value=10.0)),
    "mode": (DEFAULT_HEAD.mode, "exact gradient or the paper's reference code", False, None),
    "resolution": (DEFAULT_HEAD.resolution, "last_layer (the paper's) or output (exact, 1x1 last layers)", False, None),
    "layer": (DEFAULT_HEAD.layer, "last or penultimate (DeepLabV3+ only)", False, None),
    # The shipped model's max_logit, best pixel F1 on CamVid-OoD train (config/gradunc.yaml says how).
    "threshold": (
        -2.047887086868286,
        "OoD mask: score > threshold, in the score's scale (gradunc-calibrate)",
        False,
        None,
    ),
    "roi_classes": ("", "OoD mask only on these classes (names or ids, comma-separated); empty: all", False, None),
    "roi_dilation": (0, "pixels by which the region of interest grows", False, _I(from_value=0, to_value=1000)),
    "min_area": (0, "OoD components below this many pixels are dropped", False, _I(from_value=0, to_value=10**7)),
    "publish_overlay": (False, "also publish a colour overlay (rgb8) per camera", False, None),
    "max_image_pixels": (
        7680 * 4320,
        "frames with more pixels (width x height) are skipped with a warning; 8K UHD by default",
        True,
        _I(from_value=1, to_value=2**31 - 1),
    ),
    "stale_after": (
        2.0,
        "seconds without frames before /diagnostics warns about a camera",
        True,
        _P(from_value=0.1, to_value=3600.0),
    ),
    "status_period": (1.0, "seconds between /diagnostics messages", True, _P(from_value=0.1, to_value=60.0)),
    "log_period": (10.0, "seconds between summary log lines", True, _P(from_value=1.0, to_value=3600.0)),
}


def declare_all(node: Node) -> None:
    for name, (default, description, read_only, value_range) in PARAMETERS.items():
        descriptor = ParameterDescriptor(description=description, read_only=read_only)
        if isinstance(value_range, FloatingPointRange):
            descriptor.floating_point_range = [value_range]
        elif isinstance(value_range, IntegerRange):
            descriptor.integer_range = [value_range]
        node.declare_parameter(name, default, descriptor)


@dataclass(frozen=True)
class RuntimeSettings:
    head: HeadSettings
    mask: MaskSettings
    publish_overlay: bool


def parse_classes(text: str, class_names: tuple[str, ...]) -> tuple[int, ...]:
    """'road, pavement' or '3,4' to class ids, or ValueError naming the unknown entry."""
    ids = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.isdigit() and int(item) < len(class_names):
            ids.append(int(item))
        elif item in class_names:
            ids.append(class_names.index(item))
        else:
            raise ValueError(f"roi_classes: {item!r} is not a class of this model ({', '.join(class_names)})")
    return tuple(sorted(set(ids)))


def runtime_settings(values: dict[str, object], class_names: tuple[str, ...]) -> RuntimeSettings:
    """Validated settings from parameter values, or ValueError with the reason."""
    # HeadSettings checks score, mode, resolution and layer against their allowed values.
    head = HeadSettings(
        score=str(values["score"]), p=float(values["p"]), mode=str(values["mode"]),
        resolution=str(values["resolution"]), layer=str(values["layer"]),
    )  # fmt: skip
    mask = MaskSettings(
        threshold=float(values["threshold"]),
        roi_classes=parse_classes(str(values["roi_classes"]), class_names),
        roi_dilation=int(values["roi_dilation"]),
        min_area=int(values["min_area"]),
    )
    return RuntimeSettings(head, mask, bool(values["publish_overlay"]))
