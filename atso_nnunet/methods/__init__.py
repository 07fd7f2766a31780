"""Methods as objects: ATSO and its baselines, one module each, found through one registry.

``get_method(name)`` returns the method object; ``method_names()`` the registered names (the
``--method`` choices). Every module of this package other than ``base`` is imported on first
use, so a new method is one new file (see :mod:`atso_nnunet.methods.base`).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, List, Mapping, Tuple

from atso_nnunet.errors import InputError
from atso_nnunet.methods.base import Method, register, registry

_discovered = False


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _discovered = True


# Order of the methods in --help and docs: the paper's, then anything added.
_ORDER = ("atso", "stso", "self", "supervised", "oracle")


def method_names() -> Tuple[str, ...]:
    """Registered method names (the paper's order first)."""
    _discover()
    known = registry()
    return tuple([n for n in _ORDER if n in known] + sorted(n for n in known if n not in _ORDER))


def get_method(name: str) -> Method:
    """The method object registered as ``name``.

    Raises:
        InputError: no such method (the message lists the registered ones).
    """
    _discover()
    try:
        return registry()[name]
    except KeyError:
        raise InputError(f"method: unknown method {name!r}; choose from {', '.join(method_names())}") from None


def method_problems(values: Mapping[str, Any]) -> List[str]:
    """Plan problems about the method: unknown name, or the method's own checks."""
    name = values.get("method")
    if not isinstance(name, str):
        return []
    _discover()
    out = []
    for other, options in (values.get("method_options") or {}).items():
        if other not in registry():
            out.append(f"method_options.{other}: unknown method; choose from {', '.join(method_names())}")
        else:
            out += get_method(other).options_problems(options, f"method_options.{other}")
    if name not in registry():
        return out + [f"method: unknown method {name!r}; choose from {', '.join(method_names())}"]
    return out + get_method(name).plan_problems(values)


__all__ = ["Method", "get_method", "method_names", "method_problems", "register"]
