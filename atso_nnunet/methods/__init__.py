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


def method_word(name: str) -> str:
    """A method's name in reports and tables (its ``word``); an unknown name stands for itself."""
    _discover()
    method = registry().get(name)
    return (method.word or method.name) if method is not None else name


def methods_in_role(role: str) -> Tuple[str, ...]:
    """Names of the methods whose ``comparison_role`` is ``role``, in :func:`method_names` order."""
    known = registry()
    return tuple(n for n in method_names() if known[n].comparison_role == role)


def baseline_method() -> str:
    """The labeled-only method: it trains each seed's M0 in a comparison, the others adopt it."""
    return methods_in_role("baseline")[0]


def comparison_pairs() -> Tuple[Tuple[str, str], ...]:
    """The paired differences of a comparison: what each learner gains over the others and over
    the baseline, then each bound's gap to the baseline (the scale those gains are read on)."""
    learners, baseline = methods_in_role("learner"), baseline_method()
    return (tuple((a, b) for i, a in enumerate(learners) for b in learners[i + 1:])
            + tuple((a, baseline) for a in learners) + tuple((a, baseline) for a in methods_in_role("bound")))


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


__all__ = ["Method", "baseline_method", "comparison_pairs", "get_method", "method_names", "method_problems",
           "method_word", "methods_in_role", "register"]
