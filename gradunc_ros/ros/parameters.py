"""The node's parameters: declared with descriptors and ranges, validated into plain settings.

Start-only parameters are read-only after start; the others can be changed at
run time (``ros2 param set``) and are validated before they take effect: an
invalid update, or one the loaded model cannot compute, is refused with the
reason and changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

from ..postprocess import MaskSettings
from ..uncertainty import DEFAULT_SCORE, SETTING_FIELDS, HeadSettings
from ..uncertainty.norms import P_MAX, P_MIN

RELIABILITIES = ("best_effort", "reliable")


class ParameterSpec(NamedTuple):
    default: object
    description: str
    read_only: bool = False
    range: FloatingPointRange | IntegerRange | None = None


def _floats(low: float, high: float) -> FloatingPointRange:
    return FloatingPointRange(from_value=float(low), to_value=float(high))


def _ints(low: int, high: int) -> IntegerRange:
    return IntegerRange(from_value=low, to_value=high)


START_ONLY = True
# The score settings, from the one table of them (uncertainty/settings.py), with the package's default score.
SCORE_PARAMETERS: dict[str, ParameterSpec] = {
    field.name: ParameterSpec(
        getattr(DEFAULT_SCORE, field.name), field.help, range=_floats(P_MIN, P_MAX) if field.choices is None else None
    )
    for field in SETTING_FIELDS
}
PARAMETERS: dict[str, ParameterSpec] = {
    "model": ParameterSpec(
        "",
        "a registered architecture (gradunc-infer --help lists them) or a factory package.module:function returning "
        "an nn.Module; empty: the shipped one",
        START_ONLY,
    ),
    "weights": ParameterSpec(
        "",
        "weights file (.safetensors or .pth); empty: the shipped weights of model (an error where none are "
        "shipped), or a factory's own; 'random': random weights (tests only)",
        START_ONLY,
    ),
    "model_card": ParameterSpec(
        "",
        "model card YAML (classes, colours, normalisation, input size, last layer, output key); empty: "
        "<weights name>.card.yaml beside the weights, if any",
        START_ONLY,
    ),
    "model_path": ParameterSpec("", "folder to import a factory's module from; empty: the environment", START_ONLY),
    "num_classes": ParameterSpec(
        0, "class count of a .pth checkpoint without metadata; 0: from the weights", START_ONLY, _ints(0, 65536)
    ),
    "backend": ParameterSpec(
        "torch",
        "what runs the model: torch (PyTorch), or onnxruntime / openvino with an .onnx file as weights (gradunc-export "
        "--onnx writes one, the uncertainty head inside)",
        START_ONLY,
    ),
    "device": ParameterSpec(
        "auto", "auto (CUDA when present), cpu or cuda[:N]; cuda without CUDA fails at start", START_ONLY
    ),
    "cpu_threads": ParameterSpec(
        0, "CPU threads of the backend (PyTorch, ONNX Runtime, OpenVINO); 0: its default", START_ONLY, _ints(0, 256)
    ),
    "precision": ParameterSpec(
        "float32",
        "network precision: float32, float16 or bfloat16 (torch); float32 or bfloat16 where the CPU has it "
        "(openvino); float32 (onnxruntime); scores stay float32",
        START_ONLY,
    ),
    "fused_head": ParameterSpec(
        "auto",
        "auto: the fused Triton head where it runs (CUDA), else plain PyTorch; off; triton (fails without it)",
        START_ONLY,
    ),
    "input_size": ParameterSpec("", "network input WIDTHxHEIGHT; empty: what the weights were trained at", START_ONLY),
    "image_topics": ParameterSpec(
        ["image"],
        "camera topics, resolved and remapped as ROS names; one ending in /compressed is a CompressedImage",
        START_ONLY,
    ),
    "input_reliability": ParameterSpec(
        "auto",
        "camera QoS: auto (from the camera's publishers, before subscribing: reliable where every one offers it, "
        "else best effort), best_effort (sensor data) or reliable",
        START_ONLY,
    ),
    "output_reliability": ParameterSpec("reliable", "output QoS: reliable or best_effort", START_ONLY),
    "autostart": ParameterSpec(
        True, "configure and activate at start; false: wait for lifecycle transitions (a managed node)", START_ONLY
    ),
    "lazy": ParameterSpec(
        True, "skip inference for a camera none of whose outputs has a subscriber (as image_proc does)", START_ONLY
    ),
    **SCORE_PARAMETERS,
    "threshold": ParameterSpec(
        math.nan,
        "OoD mask: score > threshold, in the score's scale; NaN (.nan): the threshold calibrated for the running "
        "score with these weights, none: no mask",
    ),
    "threshold_score": ParameterSpec(
        "", "the score setting an explicit threshold was calibrated for (gradunc-calibrate writes it); empty: any"
    ),
    "roi_classes": ParameterSpec("", "OoD mask only on these classes (names or ids, comma-separated); empty: all"),
    "roi_dilation": ParameterSpec(0, "pixels by which the region of interest grows", range=_ints(0, 1000)),
    "min_area": ParameterSpec(0, "OoD components below this many pixels are dropped", range=_ints(0, 10**7)),
    "publish_overlay": ParameterSpec(False, "also publish a colour overlay (rgb8) per camera"),
    "max_image_pixels": ParameterSpec(
        7680 * 4320,
        "frames with more pixels (width x height) are skipped with a warning; 8K UHD by default",
        START_ONLY,
        _ints(1, 2**31 - 1),
    ),
    "stale_after": ParameterSpec(
        2.0,
        "seconds without frames before /diagnostics and the log warn about a camera, with the likely cause",
        START_ONLY,
        _floats(0.1, 3600.0),
    ),
    "depth_topics": ParameterSpec(
        [""],
        "depth images registered to the cameras (16UC1 mm or 32FC1 m, REP 118), one per camera in the order of "
        "image_topics, '' for a camera without; ['']: none. Each gives <prefix>/obstacles (PointCloud2)",
        START_ONLY,
    ),
    "depth_sync_tolerance": ParameterSpec(
        0.0,
        "seconds: 0 matches depth to a frame by equal stamps; above, the nearest within",
        START_ONLY,
        _floats(0.0, 1.0),
    ),  # fmt: skip
    "depth_wait": ParameterSpec(
        0.05,
        "seconds a processed frame waits for its depth frame when none as new has come yet",
        START_ONLY,
        _floats(0.0, 1.0),
    ),  # fmt: skip
    "obstacle_decimation": ParameterSpec(
        2,
        "every n-th row and column of the mask (and of the semantic outputs) becomes points",
        START_ONLY,
        _ints(1, 64),
    ),  # fmt: skip
    "obstacle_min_range": ParameterSpec(0.3, "metres: nearer depth is no obstacle", START_ONLY, _floats(0.0, 1000.0)),
    "obstacle_max_range": ParameterSpec(10.0, "metres: farther depth is no obstacle", START_ONLY, _floats(0.0, 1000.0)),
    "publish_semantic": ParameterSpec(
        False,
        "also <prefix>/semantic_labels (OoD as the extra class 'ood'), <prefix>/confidence (mono8) and, with "
        "depth, <prefix>/points (organised cloud), for Nav2's semantic segmentation layer",
        START_ONLY,
    ),
    "confidence_scale": ParameterSpec(
        0.0,
        "confidence = 255 / (1 + exp((score - threshold) / scale)), scale in the score's units: 0 takes the one "
        "gradunc-calibrate fitted beside the running score's threshold (then confidence / 255 is a calibrated "
        "probability), or 1 where there is none",
        START_ONLY,
        _floats(0.0, 1e6),
    ),  # fmt: skip
    "ground_plane": ParameterSpec(
        False,
        "cameras without depth: each OoD component's footprint on a flat ground as <prefix>/obstacles",
        START_ONLY,
    ),  # fmt: skip
    "camera_height": ParameterSpec(
        0.0, "ground_plane: metres of the camera above the ground", START_ONLY, _floats(0.0, 100.0)
    ),  # fmt: skip
    "camera_pitch": ParameterSpec(
        0.0, "ground_plane: radians the camera looks down (no roll)", START_ONLY, _floats(-1.5707, 1.5707)
    ),  # fmt: skip
    "ground_frame": ParameterSpec(
        "",
        "ground_plane: a frame on the ground, z up (e.g. base_footprint): the camera's height, pitch and roll from "
        "TF to each image's frame_id at its stamp (needs tf2_ros); '': camera_height and camera_pitch",
        START_ONLY,
    ),
    "obstacle_height": ParameterSpec(
        0.3, "ground_plane: metres above the ground the footprint points are put", START_ONLY, _floats(0.0, 10.0)
    ),  # fmt: skip
    "status_period": ParameterSpec(1.0, "seconds between /diagnostics messages", START_ONLY, _floats(0.1, 60.0)),
    "log_period": ParameterSpec(10.0, "seconds between summary log lines", START_ONLY, _floats(1.0, 3600.0)),
}
RUNTIME = tuple(name for name, spec in PARAMETERS.items() if not spec.read_only)


def declare_all(node: Node) -> None:
    for name, spec in PARAMETERS.items():
        descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
        if isinstance(spec.range, FloatingPointRange):
            descriptor.floating_point_range = [spec.range]
        elif isinstance(spec.range, IntegerRange):
            descriptor.integer_range = [spec.range]
        node.declare_parameter(name, spec.default, descriptor)


def reliability(name: str, value: object, allow_auto: bool = False) -> str:
    """A QoS reliability parameter's value, or ValueError naming the allowed ones."""
    allowed = ("auto", *RELIABILITIES) if allow_auto else RELIABILITIES
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


@dataclass(frozen=True)
class RuntimeSettings:
    head: HeadSettings
    mask: MaskSettings  # its threshold is a placeholder: the threshold rule (thresholds.py) picks the real one
    threshold: float | None  # explicit threshold, None for the calibrated one
    threshold_score: str
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


def head_settings(values: dict[str, object]) -> HeadSettings:
    """The score settings among parameter values, validated by HeadSettings, or ValueError with the reason."""
    return HeadSettings(
        **{f.name: float(values[f.name]) if f.choices is None else str(values[f.name]) for f in SETTING_FIELDS}
    )


def runtime_settings(values: dict[str, object], class_names: tuple[str, ...]) -> RuntimeSettings:
    """Validated settings from parameter values, or ValueError with the reason."""
    head = head_settings(values)
    threshold = float(values["threshold"])
    if math.isinf(threshold):
        raise ValueError("threshold must be a finite number, or NaN for the calibrated one")
    mask = MaskSettings(
        threshold=0.0,
        roi_classes=parse_classes(str(values["roi_classes"]), class_names),
        roi_dilation=int(values["roi_dilation"]),
        min_area=int(values["min_area"]),
    )
    return RuntimeSettings(
        head,
        mask,
        None if math.isnan(threshold) else threshold,
        str(values["threshold_score"]),
        bool(values["publish_overlay"]),
    )
