"""The fair scheduler on a simulated clock: who is served when the worker cannot keep up."""

from __future__ import annotations

import threading

import pytest

from gradunc_ros.streams.cameras import Camera
from gradunc_ros.streams.scheduler import MAX_WAIT, FrameScheduler


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def cameras(count: int) -> list[Camera]:
    return [Camera(f"/cam{i}/image_raw", False, f"/cam{i}/gradunc", f"/cam{i}/camera_info") for i in range(count)]


def replay(
    scheduler: FrameScheduler, clock: Clock, rates: list[float], cost, seconds: float = 60.0, start: float = 0.0
) -> None:
    """Cameras at ``rates`` (Hz, phase-shifted by 3 ms each) from ``start``, a worker whose pass of n frames
    takes cost(n) s."""
    arrivals = sorted(
        (start + index * 0.003 + k / rate, index)
        for index, rate in enumerate(rates)
        for k in range(int(seconds * rate))
    )
    busy_until = start
    for at, index in arrivals:
        while busy_until <= at and any(c.pending is not None for c in scheduler.cameras):
            clock.now = busy_until
            taken = scheduler.take(timeout=0)
            busy_until += cost(len(taken))
        clock.now = at
        scheduler.offer(scheduler.cameras[index], f"frame {index}@{at:.3f}")
        if busy_until <= at:  # an idle worker wakes at once and takes what waits
            taken = scheduler.take(timeout=0)
            busy_until = at + cost(len(taken))
    for camera in scheduler.cameras:
        camera.processed = camera.received - camera.dropped - (camera.pending is not None)


def shares(scheduler: FrameScheduler) -> list[float]:
    return [camera.processed / camera.received for camera in scheduler.cameras]


@pytest.mark.parametrize(
    "rates",
    [[30.0, 5.0], [10.0, 10.0, 20.0], [15.0, 15.0, 15.0]],
    ids=["30_and_5_hz", "10_10_20_hz", "three_at_15_hz"],
)
def test_every_camera_loses_about_the_same_share_when_overloaded(rates: list[float]) -> None:
    clock = Clock()
    scheduler = FrameScheduler(cameras(len(rates)), clock=clock)
    replay(scheduler, clock, rates, cost=lambda n: 0.08 * n)  # CPU-like: a batch costs per frame
    got = shares(scheduler)
    assert max(got) < 0.9, f"not overloaded: {got}"
    assert max(got) - min(got) <= 0.1, got


def test_a_camera_back_from_silence_starts_its_share_afresh() -> None:
    """Two cameras overloaded at 12 Hz stop; 4 s later they return beside a third, new camera, at 5, 5 and
    10 Hz.  Their old losses say nothing about now: carried over, they would put the two ahead of the new
    camera for as long as their windows hold them (20 s)."""
    clock = Clock()
    scheduler = FrameScheduler(cameras(3), clock=clock)
    replay(scheduler, clock, [12.0, 12.0, 0.0], cost=lambda n: 0.08 * n, seconds=18.0)
    before = [(camera.received, camera.processed) for camera in scheduler.cameras]
    replay(scheduler, clock, [5.0, 5.0, 10.0], cost=lambda n: 0.08 * n, seconds=18.0, start=22.0)
    got = [(c.processed - p) / (c.received - r) for c, (r, p) in zip(scheduler.cameras, before, strict=True)]
    assert max(got) < 0.9, f"not overloaded: {got}"
    assert max(got) - min(got) <= 0.1 * max(got), got


def test_a_slow_start_weighs_on_every_camera_alike() -> None:
    """The first passes are slow (a model warming up, a busy machine), then the worker runs at its pace.  A
    share over a camera's last N frames would remember that start twice as long for the 5 Hz cameras as for
    the 10 Hz one, and favour them to the end: 0.356 / 0.356 / 0.311 over 18 s with 100 frames.  Over the
    same seconds for every camera the start weighs alike."""
    clock = Clock()
    scheduler = FrameScheduler(cameras(3), clock=clock)
    passes = []

    def cost(frames: int) -> float:
        passes.append(frames)
        return (0.6 if len(passes) <= 3 else 0.135) * frames

    replay(scheduler, clock, [5.0, 5.0, 10.0], cost=cost, seconds=18.0)
    got = shares(scheduler)
    assert max(got) < 0.9, f"not overloaded: {got}"
    assert max(got) - min(got) <= 0.1 * max(got), got


def test_taking_every_waiting_frame_would_starve_the_fast_camera() -> None:
    """What the scheduler replaced: with an unbounded margin every waiting frame runs in each pass, and the 30 Hz
    camera loses most of its frames while the 5 Hz one loses none (the test above would fail)."""
    clock = Clock()
    scheduler = FrameScheduler(cameras(2), margin=1e9, clock=clock)
    replay(scheduler, clock, [30.0, 5.0], cost=lambda n: 0.08 * n)
    fast, slow = shares(scheduler)
    assert slow - fast > 0.3, (fast, slow)


def test_under_no_load_every_frame_is_taken_and_batched() -> None:
    clock = Clock()
    scheduler = FrameScheduler(cameras(3), clock=clock)
    for camera in scheduler.cameras:
        scheduler.offer(camera, "frame")
    taken = scheduler.take(timeout=0)
    assert [item.camera for item in taken] == scheduler.cameras  # one pass, one batch
    assert all(camera.pending is None and camera.dropped == 0 for camera in scheduler.cameras)


def test_a_pass_takes_the_oldest_frame_first_among_equals() -> None:
    clock = Clock()
    scheduler = FrameScheduler(cameras(2), clock=clock)
    first, second = scheduler.cameras
    clock.now = 1.0
    scheduler.offer(second, "older")
    clock.now = 1.1
    scheduler.offer(first, "newer")
    taken = scheduler.take(timeout=0)
    assert [item.message for item in taken] == ["older", "newer"]
    assert taken[0].arrived == 1.0


def test_a_slow_cameras_frame_is_taken_within_the_longest_wait_beside_an_overloaded_fast_one() -> None:
    """A 0.2 Hz camera beside a 30 Hz one that the worker cannot keep up with: none of the slow camera's
    frames is lost, and each is taken within MAX_WAIT and one pass of its arrival."""
    clock = Clock()
    scheduler = FrameScheduler(cameras(2), clock=clock)
    fast, slow = scheduler.cameras
    waits = []
    arrivals = sorted([(k / 30.0, fast) for k in range(1800)] + [(5.0 * k + 0.01, slow) for k in range(12)],
                      key=lambda item: item[0])  # fmt: skip
    busy_until = 0.0
    for at, camera in arrivals:
        while busy_until <= at and any(c.pending is not None for c in scheduler.cameras):
            clock.now = busy_until
            for item in scheduler.take(timeout=0):
                if item.camera is slow:
                    waits.append(clock.now - item.arrived)
            busy_until += 0.08
        clock.now = at
        scheduler.offer(camera, at)
    assert slow.dropped == 0 and len(waits) >= 11 and max(waits) <= MAX_WAIT + 0.08 + 1e-9, waits
    assert fast.dropped > 0  # it was overloaded


def test_a_camera_ahead_of_the_others_waits_a_pass() -> None:
    clock = Clock()
    scheduler = FrameScheduler(cameras(2), window=10, clock=clock)
    ahead, behind = scheduler.cameras
    scheduler.offer(ahead, "a")
    for frame in ("b1", "b2", "b3"):  # behind lost two frames in its slot, ahead none
        scheduler.offer(behind, frame)
    assert scheduler.served_share(ahead) == 1.0 and scheduler.served_share(behind) == 0.0
    assert [item.camera for item in scheduler.take(timeout=0)] == [behind]
    assert ahead.pending == "a"  # not lost: taken in the next pass unless a newer frame replaces it
    assert [item.message for item in scheduler.take(timeout=0)] == ["a"]


def test_a_replaced_frame_counts_as_dropped_and_bunched_frames_as_a_burst() -> None:
    clock = Clock()
    camera = cameras(1)[0]
    scheduler = FrameScheduler([camera], clock=clock)
    for k in range(6):  # a steady 10 Hz camera, each frame taken
        clock.now = k * 0.1
        scheduler.offer(camera, k)
        scheduler.take(timeout=0)
    clock.now = 0.6
    scheduler.offer(camera, "late")
    clock.now = 0.601  # held up on the way, delivered right behind the previous one
    scheduler.offer(camera, "later")
    clock.now = 0.7  # the worker was busy: a frame replaced after a whole gap is no burst
    scheduler.offer(camera, "newest")
    assert (camera.received, camera.dropped, camera.dropped_in_bursts) == (9, 2, 1)
    assert camera.pending == "newest"


def test_take_waits_for_a_frame_and_stop_ends_it() -> None:
    scheduler = FrameScheduler(cameras(1))
    assert scheduler.take(timeout=0.01) == []
    results = []
    thread = threading.Thread(target=lambda: results.append(scheduler.take(timeout=10)))
    thread.start()
    scheduler.offer(scheduler.cameras[0], "frame")
    thread.join(5)
    assert [item.message for item in results[0]] == ["frame"]
    thread = threading.Thread(target=lambda: results.append(scheduler.take(timeout=10)))
    thread.start()
    scheduler.offer(scheduler.cameras[0], "let go")
    scheduler.stop()
    thread.join(5)
    assert not thread.is_alive() and scheduler.take() is None and scheduler.cameras[0].pending is None
    scheduler.reopen()
    assert scheduler.take(timeout=0) == []
