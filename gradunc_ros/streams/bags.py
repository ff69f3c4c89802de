"""ROS 2 bags (mcap and sqlite3) read and written with the pure-Python ``rosbags`` package, no ROS needed.

Messages are ``rosbags`` objects with the same fields as sensor_msgs, so the
image codec (``gradunc_ros.streams.codec``) decodes them unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from .codec import array_to_message

# sensor_msgs/Image and CompressedImage are the same from Humble to Kilted.
TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
STORAGE = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
_Image = TYPESTORE.types[IMAGE]
_Compressed = TYPESTORE.types[COMPRESSED]
_Header = TYPESTORE.types["std_msgs/msg/Header"]
_Time = TYPESTORE.types["builtin_interfaces/msg/Time"]


def header(stamp_ns: int, frame_id: str):
    return _Header(stamp=_Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000), frame_id=frame_id)


def _rosbags_image(**fields):
    """rosbags' sensor_msgs/Image, whose uint8[] fields are NumPy arrays."""
    return _Image(**{**fields, "data": np.frombuffer(fields["data"], dtype=np.uint8)})


def image_message(array: np.ndarray, encoding: str, header_):
    """A rosbags sensor_msgs/Image (mono8, rgb8, 32FC1, ...) from an H x W (x C) array: the node's own
    ``codec.array_to_message``, with rosbags' message type."""
    return array_to_message(array, encoding, _rosbags_image, header_)


def compressed_message(data: bytes, image_format: str, header_):
    return _Compressed(header=header_, format=image_format, data=np.frombuffer(data, dtype=np.uint8))


@dataclass
class BagWriter:
    """Messages to a new bag; topics are added on first use."""

    path: Path
    storage: str = "mcap"

    def __enter__(self) -> BagWriter:
        if self.storage not in STORAGE:
            raise ValueError(f"storage must be one of {', '.join(STORAGE)}")
        self._writer = Writer(self.path, version=9, storage_plugin=STORAGE[self.storage])
        self._writer.open()
        self._connections: dict[str, object] = {}
        return self

    def write(self, topic: str, message, timestamp_ns: int) -> None:
        msgtype = message.__msgtype__
        self.write_serialized(topic, msgtype, TYPESTORE.serialize_cdr(message, msgtype), timestamp_ns)

    def write_serialized(self, topic: str, msgtype: str, data: bytes, timestamp_ns: int) -> None:
        """A message already in CDR (e.g. rclpy's ``serialize_message``) of type ``msgtype``."""
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE)
        self._writer.write(self._connections[topic], timestamp_ns, data)

    def __exit__(self, *exc) -> None:
        self._writer.close()


def read_messages(path: Path | str, topics: Iterable[str] | None = None) -> Iterator[tuple[str, int, object]]:
    """(topic, receive time in ns, message) in time order, for the given topics (default: all)."""
    with Reader(path) as reader:
        wanted = set(topics) if topics is not None else None
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        for connection, timestamp, raw in reader.messages(connections=connections):
            yield connection.topic, timestamp, TYPESTORE.deserialize_cdr(raw, connection.msgtype)


def topics_of(path: Path | str) -> dict[str, str]:
    """Topic name to message type."""
    with Reader(path) as reader:
        return {c.topic: c.msgtype for c in reader.connections}
