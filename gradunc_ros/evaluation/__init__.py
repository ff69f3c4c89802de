"""Evaluation: dataset readers and metrics, free of ROS."""
