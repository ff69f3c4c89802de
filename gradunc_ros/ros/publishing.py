"""What the node publishes: per camera its output images and camera_info, the latched class map.

Every output carries its input frame's header.  The arrays come from
``outputs.render_outputs`` (the bag tools publish the same ones); this module
only makes the publishers and wraps the arrays in messages.
"""

from __future__ import annotations

import json

from rclpy.lifecycle import LifecycleNode
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from ..outputs import OOD_COLOUR, OUTPUTS, render_outputs
from ..streams.cameras import Camera
from ..streams.codec import array_to_message

OOD_CLASS = "ood"  # the extra class of semantic_labels
LATCHED = QoSProfile(
    depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)  # fmt: skip


def qos_profile(reliability: str, depth: int) -> QoSProfile:
    policy = ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=policy)


def make_output_publishers(node: LifecycleNode, camera: Camera, qos: QoSProfile) -> None:
    """<prefix>/{labels,uncertainty,ood_mask,overlay,camera_info}: lifecycle publishers (silent while inactive)."""
    for name in OUTPUTS:
        camera.publishers[name] = node.create_lifecycle_publisher(Image, f"{camera.prefix}/{name}", qos)
    camera.publishers["camera_info"] = node.create_lifecycle_publisher(CameraInfo, f"{camera.prefix}/camera_info", qos)


def destroy_output_publishers(node: LifecycleNode, camera: Camera) -> None:
    for publisher in camera.publishers.values():
        node.destroy_lifecycle_publisher(publisher)
    camera.publishers = {}


def has_subscribers(camera: Camera) -> bool:
    return any(publisher.get_subscription_count() for publisher in camera.publishers.values())


def publish_class_map(node: LifecycleNode, cameras: list[Camera], loaded, with_ood: bool = False) -> list:
    """Class ids, names and colours, once per output prefix on latched topics (late joiners get them):
    ``class_map`` (JSON) and, where vision_msgs is installed, ``label_info``; ``with_ood``: the extra class
    ``ood`` (id = class count) of ``semantic_labels`` too.  Returns the publishers."""
    names, colours = list(loaded.class_names), [list(c) for c in loaded.colours]
    if with_ood:
        names, colours = [*names, OOD_CLASS], [*colours, list(OOD_COLOUR)]
    pairs = enumerate(zip(names, colours, strict=True))
    classes = [{"id": i, "name": name, "colour": colour} for i, (name, colour) in pairs]
    text = json.dumps({"model": loaded.name, "classes": classes})
    label_info = _label_info(tuple(names))
    publishers = []
    for camera in cameras:
        publisher = node.create_publisher(String, f"{camera.prefix}/class_map", LATCHED)
        publisher.publish(String(data=text))
        publishers.append(publisher)
        if label_info is not None:
            publisher = node.create_publisher(type(label_info), f"{camera.prefix}/label_info", LATCHED)
            publisher.publish(label_info)
            publishers.append(publisher)
    return publishers


def _label_info(class_names: tuple[str, ...]):
    """vision_msgs/LabelInfo of the classes where vision_msgs is installed, else None."""
    try:
        from vision_msgs.msg import LabelInfo, VisionClass
    except ImportError:
        return None
    message = LabelInfo()
    message.class_map = [VisionClass(class_id=i, class_name=name) for i, name in enumerate(class_names)]
    return message


def image_message(array, encoding: str, header=None) -> Image:
    """A sensor_msgs/Image of an H x W (x C) array in ``encoding``, under ``header`` when given."""
    return array_to_message(array, encoding, Image, header)


def publish_frame(camera: Camera, header, image, prediction, settings, threshold, loaded) -> dict:
    """One processed frame: every output image, and the camera's newest camera_info, under its header.
    Returns the outputs (``outputs.render_outputs``)."""
    mask = threshold.mask(settings.mask)
    outputs = render_outputs(image, prediction, len(loaded.class_names), mask, loaded.colours, settings.publish_overlay)
    for name, (array, encoding) in outputs.items():
        camera.publishers[name].publish(image_message(array, encoding, header))
    info = camera.info
    if info is not None:
        republished = CameraInfo(**{field: getattr(info, field) for field in info.get_fields_and_field_types()})
        republished.header = header
        camera.publishers["camera_info"].publish(republished)
    return outputs
