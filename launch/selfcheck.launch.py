"""Check the gradient-uncertainty closed forms against autograd on this machine.

    ros2 launch gradunc_ros selfcheck.launch.py device:=cuda

Runs gradunc-selfcheck from the install tree; it exits non-zero (and the
launch reports the failure) if any closed form differs from autograd.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackagePrefix


def generate_launch_description() -> LaunchDescription:
    device = DeclareLaunchArgument("device", default_value="cpu", description="torch device: cpu or cuda")
    selfcheck = ExecuteProcess(
        cmd=[
            PathJoinSubstitution([FindPackagePrefix("gradunc_ros"), "lib", "gradunc_ros", "gradunc-selfcheck"]),
            "--device",
            LaunchConfiguration("device"),
        ],
        output="screen",
    )
    return LaunchDescription([device, selfcheck])
