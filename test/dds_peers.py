"""Stock ROS 2 peers as processes of their own, for the DDS and launch tests: a camera and a listener.

Neither sets any transport variable: they are what an ordinary camera driver and
an ordinary `ros2 topic echo` are.  Run as a script:

    python dds_peers.py camera [--topic /camera/image_raw --frames 20 --rate 5]
    python dds_peers.py listener [--prefix /camera/gradunc --frames 2 --timeout 120]
    python dds_peers.py depth_camera [--prefix /depth_cam --encoding 16UC1 --count 5 --rate 5]
    python dds_peers.py cameras --topics /a/image,/b/image --rates 10,20 [--width 64 --height 48
        --seconds 20 --reliable --wait-match]

The camera publishes rgb8 frames (sensor data QoS) stamped 1, 2, ... with frame_id
"camera"; the listener prints one JSON line per output it receives and exits 0
once every output holds ``--frames`` distinct stamps, 1 on a timeout.  ``cameras``
publishes rgb8 frames on several topics from one process, each at its own rate,
stamped with the time of publishing, for ``--seconds`` (or ``--count`` frames per topic);
``--wait-match`` holds each topic back until a subscription has matched (a
recorder's or a tool's habit, so that the first frame is the first one received).
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


def cameras(args: argparse.Namespace) -> int:
    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("stock_cameras")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE) if args.reliable else qos_profile_sensor_data
    topics = args.topics.split(",")
    rates = [float(r) for r in args.rates.split(",")] if args.rates else [args.rate] * len(topics)
    pixels = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8).tobytes()
    sent = dict.fromkeys(topics, 0)
    publishers = {topic: node.create_publisher(Image, topic, qos) for topic in topics}
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    deadline = time.monotonic() + 30.0
    while args.wait_match and time.monotonic() < deadline:
        if all(p.get_subscription_count() for p in publishers.values()):
            break
        executor.spin_once(timeout_sec=0.05)
    else:
        if args.wait_match:
            print("no subscription matched within 30 s", file=sys.stderr)
            return 1

    def publish(topic: str) -> None:
        if args.count and sent[topic] >= args.count:
            return
        frame = Image(height=args.height, width=args.width, encoding="rgb8", step=args.width * 3, data=pixels)
        frame.header.stamp = node.get_clock().now().to_msg()
        frame.header.frame_id = topic.strip("/").split("/")[0]
        publishers[topic].publish(frame)
        sent[topic] += 1

    for topic, rate in zip(topics, rates, strict=True):
        node.create_timer(1.0 / rate, lambda t=topic: publish(t))
    end = time.monotonic() + args.seconds
    try:
        while time.monotonic() < end and not (args.count and all(n >= args.count for n in sent.values())):
            executor.spin_once(timeout_sec=0.05)
        time.sleep(0.5)  # let reliable writers deliver the last frames
    except KeyboardInterrupt:
        pass
    finally:
        print(json.dumps(sent), flush=True)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


SCENE = {"width": 64, "height": 48, "fx": 50.0, "fy": 55.0, "cx": 31.5, "cy": 23.5}


def scene_depth_m():
    """The depth camera's scene in metres: a wall at 2 m, a box at 1 m (rows 10-29, columns 20-39), no return
    at (12, 22), a return beyond any range limit (50 m) at (40, 50)."""
    import numpy as np

    metres = np.full((SCENE["height"], SCENE["width"]), 2.0)
    metres[10:30, 20:40] = 1.0
    metres[12, 22], metres[40, 50] = 0.0, 50.0
    return metres


def depth_camera(args: argparse.Namespace) -> int:
    """rgb8 image, registered depth (``--encoding``) and camera_info of ``scene_depth_m``, equal stamps and
    frame_id "depth_cam_optical", on <prefix>/image_raw, <prefix>/depth/image_raw, <prefix>/camera_info;
    prints the stamps it sent (JSON) at the end."""
    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    rclpy.init()
    node = rclpy.create_node("stock_depth_camera")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    width, height = SCENE["width"], SCENE["height"]
    image = node.create_publisher(Image, f"{args.prefix}/image_raw", qos)
    depth = node.create_publisher(Image, f"{args.prefix}/depth/image_raw", qos)
    info = node.create_publisher(CameraInfo, f"{args.prefix}/camera_info", qos)
    metres = scene_depth_m()
    if args.encoding == "32FC1":
        metres[14, 24] = np.nan  # 32FC1 says "no return" with NaN too
    if args.encoding == "16UC1":
        depth_bytes, step = np.rint(metres * 1000).astype(np.uint16).tobytes(), width * 2
    else:
        depth_bytes, step = metres.astype(np.float32).tobytes(), width * 4
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8).tobytes()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    deadline = time.monotonic() + 30.0
    while not (image.get_subscription_count() and depth.get_subscription_count() and info.get_subscription_count()):
        executor.spin_once(timeout_sec=0.05)
        if time.monotonic() > deadline:
            print("the node did not subscribe within 30 s", file=sys.stderr)
            return 1
    k = [SCENE["fx"], 0.0, SCENE["cx"], 0.0, SCENE["fy"], SCENE["cy"], 0.0, 0.0, 1.0]
    stamps = []
    try:
        for _ in range(args.count):
            stamp = node.get_clock().now().to_msg()
            stamps.append(stamp.sec * 1_000_000_000 + stamp.nanosec)
            camera_info = CameraInfo(width=width, height=height, k=k, distortion_model="plumb_bob", d=[0.0] * 5)
            camera_info.header.stamp, camera_info.header.frame_id = stamp, "depth_cam_optical"
            info.publish(camera_info)
            for publisher, encoding, data, row in ((depth, args.encoding, depth_bytes, step),
                                                   (image, "rgb8", pixels, width * 3)):  # fmt: skip
                frame = Image(height=height, width=width, encoding=encoding, step=row, data=data)
                frame.header.stamp, frame.header.frame_id = stamp, "depth_cam_optical"
                publisher.publish(frame)
            end = time.monotonic() + 1.0 / args.rate
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.02)
        time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print(json.dumps({"stamps": stamps}), flush=True)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("camera", "listener", "cameras", "depth_camera"))
    parser.add_argument("--encoding", default="16UC1", help="depth_camera: 16UC1 (mm) or 32FC1 (m)")
    parser.add_argument("--topics", default="/camera/image_raw")
    parser.add_argument("--rates", default="", help="Hz per topic (cameras); default: --rate for each")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--reliable", action="store_true")
    parser.add_argument("--wait-match", action="store_true")
    parser.add_argument("--count", type=int, default=0, help="frames per topic (cameras); 0: for --seconds")
    parser.add_argument("--topic", default="/camera/image_raw")
    parser.add_argument("--prefix", default="/camera/gradunc")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    roles = {"camera": camera, "listener": listener, "cameras": cameras, "depth_camera": depth_camera}
    return roles[args.role](args)


if __name__ == "__main__":
    sys.exit(main())
