"""Depth frames matched to camera frames by stamp, and when a frame may wait for its own (no ROS)."""

from __future__ import annotations

from types import SimpleNamespace

from gradunc_ros.streams.depth_sync import LIVE_FOR, DepthFrames


def header(seconds: float) -> SimpleNamespace:
    whole = int(seconds)
    return SimpleNamespace(stamp=SimpleNamespace(sec=whole, nanosec=int(round((seconds - whole) * 1e9))))


def depth(seconds: float) -> SimpleNamespace:
    return SimpleNamespace(header=header(seconds), name=f"depth@{seconds}")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_exact_stamps_match_and_others_are_counted_unmatched() -> None:
    frames = DepthFrames()
    for t in (1.0, 1.1, 1.2):
        frames.put(depth(t))
    assert frames.match(header(1.1)).name == "depth@1.1"
    assert frames.match(header(1.15)) is None  # no tolerance: a stamp between two is no match
    assert (frames.received, frames.matched, frames.unmatched) == (3, 1, 1)
    assert frames.recent() == (1, 1) and frames.recent() == (0, 0)


def test_the_nearest_within_the_tolerance_matches() -> None:
    frames = DepthFrames(tolerance_s=0.02)
    for t in (1.0, 1.1):
        frames.put(depth(t))
    assert frames.match(header(1.085)).name == "depth@1.1"
    assert frames.match(header(1.05)) is None  # 50 ms from either


def test_only_the_newest_depth_frames_are_kept() -> None:
    frames = DepthFrames(keep=3)
    for t in range(5):
        frames.put(depth(float(t)))
    assert frames.match(header(1.0)) is None and frames.match(header(2.0)).name == "depth@2.0"


def test_a_frame_waits_for_depth_only_while_the_depth_stream_is_alive() -> None:
    clock = Clock()
    frames = DepthFrames(clock=clock)
    assert not frames.may_still_come(header(5.0))  # no depth frame ever: nothing to wait for
    frames.put(depth(4.9))
    assert frames.may_still_come(header(5.0))  # the stream is alive and 5.0's depth is still to come
    assert not frames.may_still_come(header(4.9))  # here already
    clock.now += LIVE_FOR + 0.1  # the depth topic stopped: frames no longer wait
    assert not frames.may_still_come(header(5.0))
    frames.put(depth(5.2))
    assert frames.may_still_come(header(5.3))
