"""Stock ROS 2 peers as processes of their own, for the DDS and launch tests: a camera and a listener.

Neither sets any transport variable: they are what an ordinary camera driver and
an ordinary `ros2 topic echo` are.  Run as a script:

    python dds_peers.py camera [--topic /camera/image_raw --frames 20 --rate 5]
    python dds_peers.py listener [--prefix /camera/gradunc --frames 2 --timeout 120]

The camera publishes rgb8 frames (sensor data QoS) stamped 1, 2, ... with frame_id
"camera"; the listener prints one JSON line per output it receives and exits 0
once every output holds ``--frames`` distinct stamps, 1 on a timeout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

OUTPUTS = ("labels", "uncertainty", "ood_mask")


def camera(args: argparse.Namespace) -> int:
    import numpy as np
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("stock_camera")
    publisher = node.create_publisher(Image, args.topic, qos_profile_sensor_data)
    pixels = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    frame = Image(height=48, width=64, encoding="rgb8", step=64 * 3, data=pixels.tobytes())
    frame.header.frame_id = "camera"
    try:
        for index in range(1, args.frames + 1):
            frame.header.stamp.sec = index
            publisher.publish(frame)
            time.sleep(1.0 / args.rate)
    except KeyboardInterrupt:  # launch ends it with SIGINT: a clean exit
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def listener(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("stock_listener")
    stamps: dict[str, set[int]] = {name: set() for name in OUTPUTS}

    def on_output(name: str, msg: Image) -> None:
        stamps[name].add(msg.header.stamp.sec)
        record = {"output": name, "stamp": msg.header.stamp.sec, "frame_id": msg.header.frame_id,
                  "encoding": msg.encoding}  # fmt: skip
        print(json.dumps(record), flush=True)

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    for name in OUTPUTS:
        node.create_subscription(Image, f"{args.prefix}/{name}", lambda m, n=name: on_output(n, m), qos)
    deadline = time.monotonic() + args.timeout
    try:
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
            if all(len(seen) >= args.frames for seen in stamps.values()):
                return 0
        print(f"timeout: {', '.join(f'{n} {len(s)}' for n, s in stamps.items())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("camera", "listener"))
    parser.add_argument("--topic", default="/camera/image_raw")
    parser.add_argument("--prefix", default="/camera/gradunc")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    return camera(args) if args.role == "camera" else listener(args)


if __name__ == "__main__":
    sys.exit(main())
