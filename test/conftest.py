"""Shared test set-up: keep ROS logs out of ~/.ros, and give every test its own seed."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

os.environ.setdefault("ROS_HOME", tempfile.mkdtemp(prefix="gradunc_ros_home_"))
os.environ.setdefault("ROS_LOG_DIR", os.path.join(os.environ["ROS_HOME"], "log"))

P_VALUES = (0.1, 0.3, 0.5, 1.0, 2.0)
# |log a - log b| <= 1e-5 is a relative error of at most about 1e-5 on the norm itself.
LOG_TOLERANCE = 1e-5


@pytest.fixture
def generator(request: pytest.FixtureRequest) -> torch.Generator:
    """A generator seeded from the test's name: inputs differ between tests, repeat between runs."""
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.name)) % (2**31)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


CAMVID = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "camvid")


@pytest.fixture(scope="session")
def camvid_root() -> str:
    """The real CamVid frames beside the checkout; tests that need them skip when ../shared is absent."""
    if not os.path.isdir(os.path.join(CAMVID, "val", "images")):
        pytest.skip("CamVid data not found at ../shared/data/camvid")
    return os.path.abspath(CAMVID)


@pytest.fixture(scope="session")
def tiny_camvid(tmp_path_factory: pytest.TempPathFactory):
    """A CamVid-style folder of synthetic frames: sky above, road below, an 'unseen' class-9 blob, void."""
    import cv2
    import numpy as np

    root = tmp_path_factory.mktemp("tiny_camvid")
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 3)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for i in range(count):
            label = np.full((48, 64), 3, np.uint8)  # road
            label[:20] = 0  # sky
            label[10:30, 20 + i : 30 + i] = 9  # a pedestrian, held out
            label[-2:] = 11  # void
            colours = np.array([[128, 128, 128], [0, 0, 0], [0, 0, 0], [128, 64, 128]] + [[200, 30, 30]] * 8)
            image = colours[label].astype(np.int16) + rng.integers(-10, 10, (48, 64, 3))
            cv2.imwrite(str(root / split / "images" / f"seq_{i:04d}.jpg"), np.clip(image, 0, 255).astype(np.uint8))
            cv2.imwrite(str(root / split / "labels" / f"seq_{i:04d}.png"), label)
    return root


@pytest.fixture(scope="session")
def random_erfnet(tmp_path_factory: pytest.TempPathFactory):
    """A .safetensors file of an ERFNet with random weights and 9 classes (fast, no training)."""
    from gradunc_ros.models import get_architecture, save_safetensors

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "erfnet_random.safetensors"
    return save_safetensors(
        get_architecture("erfnet").build(), path, model_name="erfnet", class_names=[f"c{i}" for i in range(9)]
    )


@pytest.fixture(scope="module")
def ros_env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A private ROS graph for the test module (ros_helpers.isolated_ros_env), joined by this process too."""
    from ros_helpers import isolated_ros_env

    return isolated_ros_env(tmp_path_factory.mktemp("ros_home"))
