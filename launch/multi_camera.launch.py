"""Example: one node, one model copy, two cameras (a raw and a compressed one).

    ros2 launch gradunc_ros multi_camera.launch.py

Outputs: /front/gradunc/{labels,uncertainty,ood_mask,overlay} and /rear/gradunc/...
Frames that are ready together are batched into one forward pass.
"""

from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    main = PathJoinSubstitution([FindPackageShare("gradunc_ros"), "launch", "gradunc.launch.py"])
    return LaunchDescription(
        [
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(main),
                launch_arguments={"image_topics": "['/front/image_raw', '/rear/image_raw/compressed']"}.items(),
            )
        ]
    )
