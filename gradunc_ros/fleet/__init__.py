"""Many bags evaluated at once, on this machine or a Ray cluster: resumable, faults kept per bag, the metrics
of the whole set merged exactly.  No ROS here (bags through rosbags)."""
