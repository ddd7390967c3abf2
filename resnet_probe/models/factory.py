"""Your own code as a model source: ``path/to/file.py:factory`` or ``package.module:factory``.

This imports that file or module and calls ``factory()`` — it runs your code, as
``torch.hub.load`` runs a repository's ``hubconf.py``. Weights then come from
``--checkpoint`` (read with ``weights_only=True``, strictly), or are what the factory built.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from torch import nn

from resnet_probe.errors import ModelError, UnknownModelError, first_line


def build_from_factory(target: str) -> nn.Module:
    """Import ``where`` of ``where:factory``, call ``factory()`` and check that it returns a module.

    Example:
        >>> build_from_factory("my_nets.py:resnet20")
    """
    where, _, name = target.rpartition(":")
    module = _import(where)
    factory = getattr(module, name, None)
    if factory is None:
        defined = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))[:8]
        raise UnknownModelError(
            f"{where} defines no {name!r}; its callables: {', '.join(defined) or 'none'}"
        )
    if not callable(factory):
        raise ModelError(f"{where}:{name} is a {type(factory).__name__}, not a callable that builds a model")
    try:
        model = factory()
    except Exception as exc:  # the user's own code may raise anything
        raise ModelError(f"{where}:{name}() fails ({first_line(exc)})") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"{where}:{name}() returns a {type(model).__name__}, not a torch.nn.Module")
    return model


def _import(where: str) -> ModuleType:
    if where.endswith(".py"):
        path = Path(where).expanduser()
        if not path.is_file():
            raise UnknownModelError(f"{path} does not exist; expected a Python file defining the factory")
        name = f"resnet_probe_user_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise UnknownModelError(f"{path} cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look a module up by name
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's own code may raise anything
            sys.modules.pop(name, None)
            raise ModelError(f"importing {path} fails ({first_line(exc)})") from None
        return module
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        raise UnknownModelError(f"cannot import {where} ({first_line(exc)}); is it on PYTHONPATH?") from None
    except Exception as exc:  # the user's own code may raise anything
        raise ModelError(f"importing {where} fails ({first_line(exc)})") from None
