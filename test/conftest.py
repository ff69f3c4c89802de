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
