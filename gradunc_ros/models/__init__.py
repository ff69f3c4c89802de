"""Segmentation networks: registered architectures, the user's own through a factory, model cards, checkpoint
loading and the probe that finds the last layer; free of ROS."""

from .card import CardError, ModelCard, read_card
from .checkpoints import CheckpointError, read_state_dict, save_safetensors
from .factory import FactoryError, is_factory_reference
from .loading import LoadedModel, default_weights_path, load_model
from .probe import LastLayer, ProbeError
from .registry import Architecture, describe_models, get_architecture, model_names

__all__ = [
    "Architecture",
    "CardError",
    "CheckpointError",
    "FactoryError",
    "LastLayer",
    "LoadedModel",
    "ModelCard",
    "ProbeError",
    "default_weights_path",
    "describe_models",
    "get_architecture",
    "is_factory_reference",
    "load_model",
    "model_names",
    "read_card",
    "read_state_dict",
    "save_safetensors",
]
