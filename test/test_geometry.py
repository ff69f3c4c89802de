"""Depth and ground-plane projection against scenes of known geometry (no ROS)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from gradunc_ros.geometry.cloud import obstacle_cloud, organised_cloud, read_cloud
from gradunc_ros.geometry.depth import depth_in_metres
from gradunc_ros.geometry.ground import Mount, footprint_pixels, ground_points, mount_from_transform
from gradunc_ros.geometry.intrinsics import GeometryError, Intrinsics
from gradunc_ros.geometry.obstacles import ObstacleSettings, confidence, frame_obstacles, semantic_labels
from gradunc_ros.geometry.projection import project_all, project_masked

WIDTH, HEIGHT = 64, 48
CAMERA = Intrinsics(fx=50.0, fy=55.0, cx=31.5, cy=23.5, width=WIDTH, height=HEIGHT)


def _scene(encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """A wall 2 m away and a box 1 m away in rows 10-29, columns 20-39 (the OoD mask), in ``encoding``."""
    metres = np.full((HEIGHT, WIDTH), 2.0)
    metres[10:30, 20:40] = 1.0
    metres[12, 22] = 0.0  # no return
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[10:30, 20:40] = 255
    if encoding == "16UC1":
        return np.rint(metres * 1000).astype(np.uint16), mask
    metres = metres.astype(np.float32)
    metres[13, 23] = np.nan
    return metres, mask


def _truth(rows: np.ndarray, cols: np.ndarray, z: float) -> np.ndarray:
    return np.stack([(cols - CAMERA.cx) * z / CAMERA.fx, (rows - CAMERA.cy) * z / CAMERA.fy, np.full(rows.shape, z)], 1)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
@pytest.mark.parametrize("decimation", [1, 3])
def test_the_box_points_are_where_the_box_is(encoding: str, decimation: int) -> None:
    raw, mask = _scene(encoding)
    depth = depth_in_metres(raw, encoding, min_range=0.3, max_range=10.0)
    score = np.arange(HEIGHT * WIDTH, dtype=np.float32).reshape(HEIGHT, WIDTH)
    labels = np.full((HEIGHT, WIDTH), 4, np.uint8)
    points = project_masked(depth, mask, score, labels, CAMERA, decimation)
    grid = np.zeros_like(mask, bool)
    grid[::decimation, ::decimation] = True
    with np.errstate(invalid="ignore"):
        returned = np.isfinite(raw.astype(np.float64)) & (raw > 0)  # from the raw image, not the code under test
    rows, cols = np.nonzero(grid & (mask > 0) & returned)
    box_on_grid = len(range(10, 30, 1)) if decimation == 1 else len(range(12, 30, 3))
    box_cols = 20 if decimation == 1 else len(range(21, 40, 3))
    assert len(points.xyz) == len(rows) == box_on_grid * box_cols - (~returned[grid & (mask > 0)]).sum()
    assert np.abs(points.xyz - _truth(rows, cols, 1.0)).max() < 0.01
    assert np.array_equal(points.score, score[rows, cols]) and set(points.label) == {4}


def test_range_limits_and_invalid_depth_become_nan() -> None:
    raw = np.array([[0, 250, 1000, 12000], [65535, 500, 3000, 1]], np.uint16)
    metres = depth_in_metres(raw, "16UC1", min_range=0.3, max_range=10.0)
    assert np.isnan(metres[0, 0]) and np.isnan(metres[0, 1]) and np.isnan(metres[0, 3]) and np.isnan(metres[1, 0])
    assert metres[0, 2] == pytest.approx(1.0) and metres[1, 2] == pytest.approx(3.0) and np.isnan(metres[1, 3])
    floats = np.array([[np.nan, np.inf, -1.0, 0.0, 2.5]], np.float32)
    assert np.isnan(depth_in_metres(floats, "32FC1")[0, :4]).all() and depth_in_metres(floats, "32FC1")[0, 4] == 2.5


def test_the_organised_cloud_is_pixel_aligned_with_nan_where_no_depth() -> None:
    raw, _ = _scene("32FC1")
    points = project_all(depth_in_metres(raw, "32FC1"), CAMERA, decimation=2)
    assert points.shape == (24, 32, 3)
    assert np.abs(points[5, 10] - _truth(np.array([10]), np.array([20]), 1.0)[0]).max() < 0.01
    fields = organised_cloud(points)
    back = read_cloud(fields)
    assert (fields["height"], fields["width"], fields["point_step"], fields["is_dense"]) == (24, 32, 12, False)
    assert back["x"][5, 10] == points[5, 10, 0] and np.isnan(back["z"]).sum() == np.isnan(points[..., 2]).sum()


def test_the_obstacle_cloud_round_trips() -> None:
    xyz = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]], np.float32)
    fields = obstacle_cloud(xyz, np.array([7.5, -2.0], np.float32), np.array([3, 65535]))
    back = read_cloud(fields)
    assert (fields["height"], fields["width"], fields["point_step"], fields["row_step"]) == (1, 2, 20, 40)
    assert back["z"][0, 1] == 4.0 and back["score"][0, 0] == 7.5 and back["label"][0, 1] == 65535


def test_a_rectified_cameras_points_come_from_p_as_depth_image_proc_takes_them() -> None:
    """image_geometry's fx(), cx(), ... (and so depth_image_proc) read the projection matrix P, the rectified
    image's intrinsics; K, those of the raw image, differ from them after rectification.  A box 1 m away
    seen through P's intrinsics lands where it is only when P is used; a driver filling K alone still works."""
    k = [48.0, 0.0, 30.0, 0.0, 52.0, 25.0, 0.0, 0.0, 1.0]  # the raw, distorted image's camera matrix
    p = [CAMERA.fx, 0.0, CAMERA.cx, 0.0, 0.0, CAMERA.fy, CAMERA.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    rectified = Intrinsics.from_camera_info(SimpleNamespace(k=k, p=p, width=WIDTH, height=HEIGHT))
    assert rectified == CAMERA
    raw, mask = _scene("16UC1")
    depth = depth_in_metres(raw, "16UC1")
    rows, cols = np.nonzero((mask > 0) & (raw > 0))
    labels = np.zeros(mask.shape, np.uint8)
    points = project_masked(depth, mask, np.zeros(mask.shape, np.float32), labels, rectified)
    assert np.abs(points.xyz - _truth(rows, cols, 1.0)).max() < 0.01
    from_k = project_masked(depth, mask, np.zeros(mask.shape, np.float32), labels, Intrinsics(48, 52, 30, 25, 64, 48))
    assert np.abs(from_k.xyz - _truth(rows, cols, 1.0)).max() > 0.02  # K would have put the box elsewhere
    only_k = Intrinsics.from_camera_info(SimpleNamespace(k=k, p=[0.0] * 12, width=WIDTH, height=HEIGHT))
    assert (only_k.fx, only_k.fy, only_k.cx, only_k.cy) == (48.0, 52.0, 30.0, 25.0)


def test_refused_inputs_say_why() -> None:
    with pytest.raises(GeometryError, match="REP 118"):
        depth_in_metres(np.zeros((2, 2), np.uint8), "mono8")
    with pytest.raises(GeometryError, match="registered"):
        project_masked(np.ones((4, 4), np.float32), np.ones((5, 4), np.uint8), np.ones((5, 4)), np.ones((5, 4)), CAMERA)
    for k in ([0.0] * 9, [50.0, 0, 31.5, 0, float("nan"), 23.5, 0, 0, 1]):
        with pytest.raises(GeometryError, match="focal lengths"):
            Intrinsics.from_camera_info(SimpleNamespace(k=k, width=WIDTH, height=HEIGHT))
    with pytest.raises(GeometryError, match="no camera_info"):
        Intrinsics.from_camera_info(None)
    with pytest.raises(GeometryError, match="describes 64x48"):
        project_all(np.ones((10, 10), np.float32), CAMERA)


@pytest.mark.parametrize("pitch_degrees", [0.0, 10.0, 25.0])
def test_footprints_on_the_ground_plane_land_where_the_ground_is(pitch_degrees: float) -> None:
    height, pitch = 1.2, math.radians(pitch_degrees)
    up = np.array([0.0, -math.cos(pitch), -math.sin(pitch)])
    forward = np.array([0.0, -math.sin(pitch), math.cos(pitch)])  # the horizontal direction ahead
    right = np.array([1.0, 0.0, 0.0])
    truth = np.array([-height * up + d * forward + s * right for d in (3.0, 6.0, 12.0) for s in (-1.0, 0.0, 1.5)])
    cols = CAMERA.fx * truth[:, 0] / truth[:, 2] + CAMERA.cx
    rows = CAMERA.fy * truth[:, 1] / truth[:, 2] + CAMERA.cy
    points, meets = ground_points(rows, cols, CAMERA, Mount.from_pitch(height, pitch))
    assert meets.all() and np.abs(points - truth).max() < 0.01
    lifted, _ = ground_points(rows, cols, CAMERA, Mount.from_pitch(height, pitch), obstacle_height=0.3)
    assert np.allclose((lifted - points) @ up, 0.3, atol=1e-5)
    above = ground_points(np.array([0.0]), np.array([30.0]), CAMERA, Mount.from_pitch(height, 0.0))[1]
    assert not above.any()  # the top row, above the horizon


def quaternion(axis: tuple[float, float, float], angle: float) -> np.ndarray:
    """(x, y, z, w) of a rotation by ``angle`` about ``axis``."""
    return np.array([*(np.sin(angle / 2) * np.asarray(axis, float)), np.cos(angle / 2)])


def times(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The Hamilton product a b of (x, y, z, w) quaternions: b first, then a."""
    (ax, ay, az, aw), (bx, by, bz, bw) = a, b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])  # fmt: skip


def test_the_ground_plane_from_tf_lands_where_the_ground_is_with_roll_and_offset() -> None:
    """A camera 1.2 m above base_footprint, 0.5 m ahead and 0.1 m left of its origin, looking down 10 degrees
    and rolled 5: the mount from the transform tf2 would give (base_footprint into the optical frame) puts
    footprints of ground points of known position back where they are; pitch alone would not."""
    centre, pitch, roll = np.array([0.5, 0.1, 1.2]), math.radians(10.0), math.radians(5.0)
    # the optical axes (x right, y down, z forward) in base_footprint (x forward, y left, z up)
    level = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    pitch_down = np.array([[math.cos(pitch), 0, math.sin(pitch)], [0, 1, 0], [-math.sin(pitch), 0, math.cos(pitch)]])
    rolled = np.array([[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]])
    axes = pitch_down @ level @ rolled  # columns: the optical axes in base_footprint
    ground = np.array([[d, s, 0.0] for d in (3.0, 6.0, 12.0) for s in (-1.0, 0.0, 1.5)])
    truth = (ground - centre) @ axes  # the ground points in the optical frame
    cols = CAMERA.fx * truth[:, 0] / truth[:, 2] + CAMERA.cx
    rows = CAMERA.fy * truth[:, 1] / truth[:, 2] + CAMERA.cy
    # the same rotation as a quaternion, composed about the axes (independent of the matrices above)
    level_q = times(quaternion((0, 0, 1), -math.pi / 2), quaternion((1, 0, 0), -math.pi / 2))
    axes_q = times(times(quaternion((0, 1, 0), pitch), level_q), quaternion((0, 0, 1), roll))
    into_optical = axes_q * np.array([-1, -1, -1, 1])  # the inverse rotation: base_footprint into optical
    translation = -(centre @ axes)
    mount = mount_from_transform(translation, into_optical)
    assert mount.height == pytest.approx(1.2) and np.allclose(mount.up, axes.T @ [0, 0, 1])
    points, meets = ground_points(rows, cols, CAMERA, mount)
    assert meets.all() and np.abs(points - truth).max() < 0.01
    unrolled, _ = ground_points(rows, cols, CAMERA, Mount.from_pitch(1.2, pitch))
    assert np.abs(unrolled - truth).max() > 0.1  # 5 degrees of roll that height and pitch cannot say
    with pytest.raises(GeometryError, match="not above the ground"):
        mount_from_transform(-(np.array([0.5, 0.1, -0.2]) @ axes), into_optical)


def test_each_components_footprint_is_its_lowest_pixel_per_column() -> None:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[10:20, 5:8] = 255  # a box: footprint row 19, columns 5-7
    mask[30:33, 40] = 255  # a thin post: row 32, column 40
    mask[45, 60] = 255  # a speck, left out by min_area
    rows, cols = footprint_pixels(mask, min_area=2)
    assert sorted(zip(cols.tolist(), rows.tolist(), strict=True)) == [(5, 19), (6, 19), (7, 19), (40, 32)]


def _prediction(score: np.ndarray) -> SimpleNamespace:
    return SimpleNamespace(labels=np.full(score.shape, 2, np.int64), score=score)


def test_frame_obstacles_with_depth_give_the_cloud_and_the_semantic_outputs() -> None:
    raw, mask = _scene("16UC1")
    score = np.where(mask > 0, 5.0, -5.0).astype(np.float32)
    settings = ObstacleSettings(decimation=2, semantic=True, confidence_scale=1.0)
    outputs = frame_obstacles(settings, CAMERA, _prediction(score), mask, 0.0, 9, (raw, "16UC1"))
    assert set(outputs) == {"obstacles", "points", "semantic_labels", "confidence"}
    cloud = read_cloud(outputs["obstacles"])
    assert cloud.shape == (1, 10 * 10 - 1)  # the box on the even grid, less its pixel without a return
    assert np.allclose(cloud["z"], 1.0) and np.all(cloud["score"] == 5.0) and np.all(cloud["label"] == 2)
    labels, encoding = outputs["semantic_labels"]
    assert encoding == "mono8" and labels.shape == (24, 32) and labels[5, 10] == 9 and labels[0, 0] == 2
    sure = outputs["confidence"][0]  # confident in its label on both sides of the threshold
    assert sure.shape == (24, 32) and sure[5, 10] == sure[0, 0] == round(255 / (1 + math.exp(-5)))
    assert read_cloud(outputs["points"]).shape == (24, 32)
    at_threshold = confidence(np.zeros((1, 1)), 0.0, 1.0)
    assert at_threshold[0, 0] == 128 and semantic_labels(np.zeros((2, 2), np.int64), None, 300).dtype == np.uint16


def test_frame_obstacles_without_depth_use_the_ground_plane_when_asked() -> None:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[30:40, 10:20] = 255
    prediction = _prediction(np.zeros((HEIGHT, WIDTH), np.float32))
    assert frame_obstacles(ObstacleSettings(), CAMERA, prediction, mask, 0.0, 9, None) == {}
    ground = ObstacleSettings(ground_plane=True, camera_height=1.0, camera_pitch=0.0, obstacle_height=0.0)
    cloud = read_cloud(frame_obstacles(ground, CAMERA, prediction, mask, 0.0, 9, None)["obstacles"])
    assert cloud.shape == (1, 10) and np.allclose(cloud["y"], 1.0)  # one point per column, on the ground
    assert np.allclose(cloud["z"], 1.0 * CAMERA.fy / (39 - CAMERA.cy), atol=1e-4)  # row 39's ray
    mask[24, 50] = 255  # just below the horizon: its ray meets the ground 110 m away, beyond the range
    far = read_cloud(frame_obstacles(ground, CAMERA, prediction, mask, 0.0, 9, None)["obstacles"])
    assert far.shape == (1, 10) and far["z"].max() <= ground.max_range
    with pytest.raises(ValueError, match="camera_height"):
        ObstacleSettings(ground_plane=True)
