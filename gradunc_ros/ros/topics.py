"""Where the node publishes: plain string rules, no ROS import (the bag tools use them offline)."""

from __future__ import annotations

OUTPUTS = ("labels", "uncertainty", "ood_mask", "overlay")


def output_prefixes(topics: list[str]) -> list[str]:
    """Outputs go to <camera namespace>/gradunc/...; cameras sharing a namespace get <topic>/gradunc/..."""
    bases = [t.removesuffix("/compressed") for t in topics]
    parents = [b.rpartition("/")[0] for b in bases]  # "image" -> "", "/front/image_raw" -> "/front"
    if len(set(parents)) == len(parents):
        return [f"{p}/gradunc" if p else "gradunc" for p in parents]
    return [f"{b}/gradunc" for b in bases]


def output_topics(camera_topic: str) -> dict[str, str]:
    """The output topics of a node serving this one camera."""
    prefix = output_prefixes([camera_topic])[0]
    return {name: f"{prefix}/{name}" for name in OUTPUTS}
