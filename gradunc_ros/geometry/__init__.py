"""Image-space outputs to 3-D points a planner can use: depth projection, the ground plane, point clouds.

Plain NumPy, no ROS: the node wraps the arrays in sensor_msgs/PointCloud2.
"""
