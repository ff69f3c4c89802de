"""gradunc_ros: pixel-wise gradient uncertainty for out-of-distribution segmentation on ROS 2 cameras."""

__version__ = "0.1.0"
