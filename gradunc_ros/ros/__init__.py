"""The ROS 2 layer: the only part of gradunc_ros that talks to rclpy and message packages."""
