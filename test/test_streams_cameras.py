"""A camera's counts and the status it reports, silent cameras' likely causes included."""

from __future__ import annotations

from types import SimpleNamespace

from gradunc_ros.streams.cameras import Camera, Transport, status_level


def _camera() -> Camera:
    return Camera("/front/image_raw", False, "/front/gradunc", "/front/camera_info")


def _values(camera: Camera, **changes) -> dict:
    return {**camera.status(1.0), **changes}


def test_status_counts_and_recent_counts_reset_each_report() -> None:
    camera = _camera()
    camera.take_frame(SimpleNamespace(width=4, height=2, encoding="rgb8", data=b"x" * 24), now=1.0)
    camera.processed, camera.undecodable = 1, 2
    values = camera.status(0.5)
    assert (values["received"], values["processed"], values["rate_hz"], values["recent_undecodable"]) == (1, 1, 2, 2)
    again = camera.status(0.5)
    assert (again["rate_hz"], again["recent_undecodable"], again["undecodable"]) == (0, 0, 2)
    assert camera.last_frame_size == "4x2 rgb8 (0 kB)"


def test_a_silent_camera_names_the_likely_cause() -> None:
    never = {"seconds_since_frame": -1.0}
    camera = _camera()
    level, message = status_level(_values(camera, **never), 2.0)
    assert (level, message) == ("warn", "no frames yet: waiting for a publisher")
    big = "1280x720 rgb8 (2.8 MB)"
    blind = Transport(["best_effort"], "best_effort", big)
    level, message = status_level(_values(camera, seconds_since_frame=5.0), 2.0, blind)
    assert level == "warn" and message.startswith("no frames for 5.0 s from 1 matched publisher, received best effort")
    assert big in message and "compressed images" in message and "LARGE_DATA" in message
    # remedies the camera already has are not offered
    compressed_large_data = Transport(["best_effort"], "best_effort", "jpeg (900 kB)", compressed=True, large_data=True)
    message = status_level(_values(camera, **never, seconds_subscribed=9.0), 2.0, compressed_large_data)[1]
    assert (
        "compressed images" not in message and "LARGE_DATA" not in message and "a camera publishing reliable" in message
    )
    message = status_level(_values(camera, **never), 2.0, Transport(["best_effort"] * 2, "reliable"))[1]
    assert "its 2 publishers offer best_effort and this node subscribes reliable" in message
    message = status_level(_values(camera, **never), 2.0, Transport(["reliable", "best_effort"], "best_effort"))[1]
    assert "1 offers reliable (input_reliability auto or reliable)" in message
    message = status_level(_values(camera, **never), 2.0, Transport(["reliable", "best_effort"], "reliable"))[1]
    assert message.startswith("no frames yet from 1 matched reliable publisher (1 best-effort one does not match)")
    message = status_level(_values(camera, seconds_since_frame=9.0), 2.0, Transport([], "reliable"))[1]
    assert message == "no frames for 9.0 s: no publisher"


def test_a_new_subscription_waits_stale_after_for_its_first_frame() -> None:
    camera = _camera()
    fresh = _values(camera, seconds_since_frame=-1.0, seconds_subscribed=1.0)
    assert status_level(fresh, 2.0, Transport(["reliable"], "reliable")) == (
        "ok",
        "subscribed, waiting for the first frame",
    )
    late = _values(camera, seconds_since_frame=-1.0, seconds_subscribed=2.5)
    assert status_level(late, 2.0, Transport(["reliable"], "reliable"))[0] == "warn"


def test_a_camera_with_fresh_frames_is_ok_or_says_what_went_wrong_recently() -> None:
    camera = _camera()
    fresh = {"seconds_since_frame": 0.1}
    assert status_level(_values(camera, **fresh), 2.0) == ("ok", "ok")
    failed = _values(camera, **fresh, recent_inference_failed=1)
    assert status_level(failed, 2.0) == ("warn", "inference failed on frames (see the log)")
    lazy = _values(camera, **fresh, recent_lazy_skipped=3, rate_hz=0.0)
    assert status_level(lazy, 2.0) == ("ok", "lazy: no subscriber to the outputs, inference skipped")


def test_undecodable_reasons_are_reported_once_per_kind_and_bounded() -> None:
    camera = _camera()
    assert camera.first_report("frame of 4000x3000 is larger than max_image_pixels")
    assert not camera.first_report("frame of 5000x3000 is larger than max_image_pixels")
    said = [camera.first_report(f"unknown encoding 'x{'y' * index}'") for index in range(100)]
    assert camera.undecodable == 102 and sum(said) == 63 and said[:63] == [True] * 63  # 64 kinds in all, then none
