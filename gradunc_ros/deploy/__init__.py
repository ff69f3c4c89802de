"""Deployment: the model and its head exported to ONNX, and the runtimes that run it (ONNX Runtime, OpenVINO);
free of ROS."""
