"""A model of the user's own, named as ``package.module:function``: no registration, no edit of this package.

The function (any callable) returns an ``nn.Module`` that maps N x 3 x H x W
images to logits (``uncertainty.model_output`` says which outputs are
understood).  Its module is imported from the user's environment, or from a
folder named with ``model_path`` (put first on ``sys.path``, so that it can
import its siblings).  The model card's ``factory_arguments`` are passed as
keyword arguments.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

# package.module:function, where each part is a Python name (the function may be an attribute path: a.b)
REFERENCE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class FactoryError(ValueError):
    """A factory that cannot be imported or called, or that returns no model; the reason in words."""


def is_factory_reference(name: str | None) -> bool:
    """``package.module:function`` rather than a registered name."""
    return bool(name) and ":" in str(name)


def build_from_factory(
    reference: str, model_path: str | Path | None = None, arguments: Mapping[str, Any] = ()
) -> nn.Module:
    """The model ``reference`` builds, in eval mode, or FactoryError with the module's own error."""
    if not REFERENCE.match(reference):
        raise FactoryError(f"model {reference!r} is neither a registered name nor package.module:function")
    module_name, function_name = reference.split(":")
    if model_path:
        folder = Path(model_path).expanduser().resolve()
        if not folder.is_dir():
            raise FactoryError(f"model_path {model_path} is not a folder")
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - whatever the user's module raises on import is said as it is
        where = f" (from {model_path} or the environment)" if model_path else ""
        raise FactoryError(f"cannot import {module_name}{where}: {type(error).__name__}: {error}") from error
    if model_path:  # a module of that name imported before, or found elsewhere first, is not the one named
        origin = Path(getattr(target, "__file__", "") or "").resolve()
        if folder not in origin.parents:
            raise FactoryError(
                f"{module_name} was imported from {origin.parent if origin.name else 'a built-in'}, not from "
                f"model_path {model_path}: rename the module, or leave model_path empty to use that one"
            )
    for part in function_name.split("."):
        if not hasattr(target, part):
            raise FactoryError(f"{module_name} has no {function_name}")
        target = getattr(target, part)
    if not callable(target):
        raise FactoryError(f"{reference} is a {type(target).__name__}, not a function returning a model")
    try:
        model = target(**dict(arguments))
    except Exception as error:  # noqa: BLE001 - the factory's own failure, said in one line
        raise FactoryError(f"the factory {reference} raised {type(error).__name__}: {error}") from error
    if not isinstance(model, nn.Module):
        raise FactoryError(f"the factory {reference} returned a {type(model).__name__}, not a torch nn.Module")
    return model.eval()
