"""Start gradunc_node on one or more cameras.

    ros2 launch gradunc_ros gradunc.launch.py image_topics:="['/camera/image_raw']"
    ros2 launch gradunc_ros gradunc.launch.py image_topics:="['/camera/color/image_raw']" \
        depth_topics:="['/camera/aligned_depth_to_color/image_raw']" publish_semantic:=true
    ros2 launch gradunc_ros gradunc.launch.py image_topics:="['/front/image_raw', '/rear/image_raw/compressed']" \
        device:=cuda params_file:=/path/to/calibrated.yaml namespace:=perception

The node runs on the stock Fast DDS transports by default, so it talks to every
ordinary ROS 2 process (camera drivers, rviz, the ros2 CLI). large_data:=true puts it
on Fast DDS's LARGE_DATA transports instead: only for a system whose every process
sets FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA too (processes with and without it do not
see each other at all; README, "Transport"). autostart:=false gives a managed node
that waits for lifecycle transitions.
"""

import yaml
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    "image_topics": ("['/camera/image_raw']", "camera topics (YAML list); a topic ending in /compressed is compressed"),
    "depth_topics": (
        "",
        "depth images registered to the cameras (YAML list, one per camera, '' for none): each gives "
        "<camera ns>/gradunc/obstacles; empty: as in params_file (none)",
    ),
    "publish_semantic": ("", "true: also the outputs of Nav2's semantic segmentation layer; empty: as in params_file"),
    "model": ("", "architecture or factory package.module:function; empty: as in params_file (the shipped model)"),
    "weights": ("", "weights file (.safetensors or .pth); empty: as in params_file"),
    "model_card": ("", "model card YAML; empty: as in params_file (<weights>.card.yaml beside the weights)"),
    "model_path": ("", "folder to import a factory's module from; empty: as in params_file"),
    "backend": ("", "torch, onnxruntime or openvino (weights an .onnx file); empty: as in params_file (torch)"),
    "device": ("", "auto, cpu or cuda[:N]; empty: as in params_file (default: auto)"),
    "params_file": (
        PathJoinSubstitution([FindPackageShare("gradunc_ros"), "config", "gradunc.yaml"]),
        "parameter file (e.g. written by gradunc-calibrate)",
    ),
    "namespace": ("", "namespace of the node"),
    "autostart": ("true", "configure and activate at start; false: wait for lifecycle transitions"),
    "large_data": (
        "false",
        "Fast DDS's LARGE_DATA transports: only where every process of the system sets them too",
    ),
}


def _node(context) -> list:
    """The node, with the launch arguments that were given overriding params_file."""
    value = {
        name: LaunchConfiguration(name).perform(context)
        for name in ("image_topics", "model", "weights", "model_card", "model_path", "backend", "device")
    }
    topics = yaml.safe_load(value.pop("image_topics"))
    overrides = {"image_topics": [topics] if isinstance(topics, str) else [str(t) for t in topics]}
    depth = LaunchConfiguration("depth_topics").perform(context)
    if depth:
        depth = yaml.safe_load(depth)
        depth = [depth] if isinstance(depth, str) else [str(t or "") for t in depth or []]
        # "[]": no depth for any camera; an empty list has no type a parameter file can carry, so one '' each
        overrides["depth_topics"] = depth or [""] * len(overrides["image_topics"])
    semantic = LaunchConfiguration("publish_semantic").perform(context)
    if semantic:
        overrides["publish_semantic"] = semantic.lower() in ("true", "1", "yes")
    overrides.update({name: text for name, text in value.items() if text})  # empty: keep params_file's
    overrides["autostart"] = LaunchConfiguration("autostart").perform(context).lower() in ("true", "1", "yes")
    node = Node(
        package="gradunc_ros",
        executable="gradunc_node",
        name="gradunc_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        output="screen",
        emulate_tty=True,
    )
    return [node]


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=d, description=text) for name, (d, text) in ARGUMENTS.items()]
    large_data = SetEnvironmentVariable(
        "FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA", condition=IfCondition(LaunchConfiguration("large_data"))
    )
    return LaunchDescription([*declared, large_data, OpaqueFunction(function=_node)])
