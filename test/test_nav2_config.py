"""The Nav2 costmap snippet a user copies (config/nav2_costmap.yaml) against what the node publishes."""

from __future__ import annotations

from pathlib import Path

import yaml

from gradunc_ros.models.card import read_card
from gradunc_ros.streams.topics import output_prefixes

CONFIG = Path(__file__).resolve().parents[1] / "config" / "nav2_costmap.yaml"
SHIPPED_CARD = Path(__file__).resolve().parents[1] / "gradunc_ros" / "weights" / "erfnet_camvid.card.yaml"


def _semantic_block() -> dict:
    """The commented-out semantic layer block, uncommented."""
    lines = CONFIG.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#      plugins:"))
    return yaml.safe_load("\n".join(line[1:] for line in lines[start:] if line.startswith("#")))


def test_the_obstacle_layer_reads_the_nodes_obstacle_cloud() -> None:
    params = yaml.safe_load(CONFIG.read_text())["local_costmap"]["local_costmap"]["ros__parameters"]
    layer = params[params["plugins"][0]]
    source = layer[layer["observation_sources"]]
    assert source["topic"] == f"{output_prefixes(['/camera/color/image_raw'])[0]}/obstacles"
    assert source["data_type"] == "PointCloud2" and source["marking"] is True


def test_the_semantic_layer_lists_every_class_the_node_names_and_reads_its_topics() -> None:
    block = _semantic_block()
    layer = block["semantic_layer"]
    camera = layer[layer["observation_sources"]]
    prefix = output_prefixes(["/camera/color/image_raw"])[0]
    topics = {camera[key] for key in ("segmentation_topic", "confidence_topic", "labels_topic", "pointcloud_topic")}
    assert topics == {f"{prefix}/{name}" for name in ("semantic_labels", "confidence", "label_info", "points")}
    listed = [name for kind in camera["class_types"] for name in camera[kind]["classes"]]
    names = [*read_card(SHIPPED_CARD).class_names, "ood"]  # the class map of semantic_labels
    assert sorted(listed) == sorted(names), "every class once, or the layer complains of those left out"
    assert camera[next(k for k in camera["class_types"] if "ood" in camera[k]["classes"])]["base_cost"] == 254
