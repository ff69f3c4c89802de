"""Output topic naming for one and several cameras."""

from __future__ import annotations

from gradunc_ros.streams.topics import node_parameters, output_prefixes, output_topics


def test_each_camera_namespace_gets_its_outputs() -> None:
    assert output_prefixes(["/front/image_raw", "/rear/image_raw/compressed"]) == ["/front/gradunc", "/rear/gradunc"]
    assert output_prefixes(["image"]) == ["gradunc"]  # relative: remappable under the node's namespace


def test_cameras_sharing_a_namespace_are_kept_apart() -> None:
    assert output_prefixes(["/cam/left", "/cam/right"]) == ["/cam/left/gradunc", "/cam/right/gradunc"]


def test_output_topics_of_one_camera() -> None:
    topics = output_topics("/camera/image_raw/compressed")
    assert topics["uncertainty"] == "/camera/gradunc/uncertainty" and topics["ood_mask"] == "/camera/gradunc/ood_mask"


def test_parameter_file_sections_in_either_key_form() -> None:
    assert node_parameters({"/**/gradunc_node": {"ros__parameters": {"p": 0.5}}}) == {"p": 0.5}
    assert node_parameters({"gradunc_node": {"ros__parameters": {"p": 2.0}}}) == {"p": 2.0}
    assert node_parameters({"other_node": {"ros__parameters": {"p": 1.0}}}) == {}
