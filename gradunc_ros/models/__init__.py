"""Segmentation networks, their registry and checkpoint loading; free of ROS."""

from .checkpoints import CheckpointError, read_state_dict, save_safetensors
from .loading import LoadedModel, default_weights_path, load_model
from .registry import ModelSpec, describe_models, get_spec, model_names

__all__ = [
    "CheckpointError",
    "LoadedModel",
    "ModelSpec",
    "default_weights_path",
    "describe_models",
    "get_spec",
    "load_model",
    "model_names",
    "read_state_dict",
    "save_safetensors",
]
