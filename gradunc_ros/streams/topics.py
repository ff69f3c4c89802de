"""Names the node uses: output topics and its parameter-file key; plain rules, no ROS import."""

from __future__ import annotations

from ..outputs import OUTPUTS


def output_prefixes(topics: list[str]) -> list[str]:
    """Outputs go to <camera namespace>/gradunc/...; cameras sharing a namespace get <topic>/gradunc/...

    Two cameras whose outputs would land on the same topics (the same topic twice, or a topic and its
    /compressed form) are a ValueError naming them."""
    bases = [t.removesuffix("/compressed") for t in topics]
    for index, base in enumerate(bases):
        if base in bases[:index]:
            other = topics[bases.index(base)]
            raise ValueError(
                f"cameras {other} and {topics[index]} would publish on the same outputs ({base}/gradunc/...): "
                "give each camera topic once"
            )
    parents = [b.rpartition("/")[0] for b in bases]  # "image" -> "", "/front/image_raw" -> "/front"
    if len(set(parents)) == len(parents):
        return [f"{p}/gradunc" if p else "gradunc" for p in parents]
    return [f"{b}/gradunc" for b in bases]


def camera_info_topic(camera_topic: str) -> str:
    """Where a camera driver publishes the camera model of an image topic (image_transport's rule):
    ``/front/image_raw`` and ``/front/image_raw/compressed`` -> ``/front/camera_info``."""
    parent = camera_topic.removesuffix("/compressed").rpartition("/")[0]
    return f"{parent}/camera_info" if parent else "camera_info"


def output_topics(camera_topic: str) -> dict[str, str]:
    """The output topics of a node serving this one camera."""
    prefix = output_prefixes([camera_topic])[0]
    return {name: f"{prefix}/{name}" for name in OUTPUTS}


# The key of the node's section in a ROS 2 parameter file: the node gradunc_node in any
# namespace (a plain "gradunc_node" would match it only in the root namespace).
PARAMETER_FILE_KEY = "/**/gradunc_node"


def node_parameters(document: dict) -> dict:
    """The ros__parameters of gradunc_node in a loaded parameter file (either key form), or {}."""
    for key in (PARAMETER_FILE_KEY, "gradunc_node", "/gradunc_node", "/**"):
        section = (document or {}).get(key)
        if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
            return section["ros__parameters"]
    return {}
