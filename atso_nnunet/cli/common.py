"""Pieces shared by the command-line tools, so that the same idea has one spelling everywhere.

- ``--nnunet-dir DIR``: the nnU-Net folders (``DIR/nnUNet_raw`` ...), else the environment;
- ``--views VIEW ...``: a list option (space- or comma-separated);
- ``--overwrite``: replace an existing output;
- ``-v/--verbose``; old spellings stay as hidden aliases that warn (:class:`DeprecatedAlias`);
- :func:`plain`: docstrings shown by ``--help`` without their reST markup;
- argument types that refuse a bad value while the command line is parsed, before any work and the
  same with or without ``--dry-run``: :func:`number` (with its limits, finite) and :func:`folder`
  (a path that is not a file).
"""
from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

from atso_nnunet.errors import AtsoError, InputError
from atso_nnunet.limits import limit_problem
from atso_nnunet.paths import NnUNetPaths
from atso_nnunet.views import VIEWS

logger = logging.getLogger("atso_nnunet")


def plain(doc: Optional[str]) -> str:
    """A docstring as ``--help`` shows it: no reST roles, literals or ``::`` markers.

    >>> plain("Run ``atso_nnunet_run`` (see :func:`run_experiment`). Example::")
    'Run atso_nnunet_run (see run_experiment). Example:'
    """
    text = doc or ""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"::(\s*\n)", r":\1", text)
    return re.sub(r"::$", ":", text.strip())


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option: same effect as the new one, hidden from ``--help``, warns when used."""

    def __init__(self, option_strings: List[str], dest: str, new: str = "", **kwargs: Any):
        kwargs["help"] = argparse.SUPPRESS
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)
        notes = list(getattr(namespace, "deprecated_options", None) or [])
        notes.append(f"{option_string} is deprecated; use {self.new}")
        setattr(namespace, "deprecated_options", notes)


def add_alias(parser: argparse.ArgumentParser, old: str, new: str, dest: str, flag: bool = False,
              **kwargs: Any) -> None:
    """Accept ``old`` as a hidden, deprecated spelling of the option ``new`` (same ``dest``).

    Args:
        flag: the option takes no value (``store_true``).
        **kwargs: ``type``, ``nargs`` ... of the new option.
    """
    if flag:
        kwargs.update(nargs=0, const=True)
    parser.add_argument(old, dest=dest, action=DeprecatedAlias, new=new, default=argparse.SUPPRESS, **kwargs)


def number(minimum: Optional[float], maximum: Optional[float], integer: bool = True,
           above_minimum: bool = False) -> Callable[[str], Any]:
    """An argparse ``type``: a whole (or finite) number within its limits, else a parse error naming it.

    ``--cpu-jobs 0`` stops the command with ``argument --cpu-jobs: 0 is below the minimum 1; give a
    whole number from 1 to 1024`` (exit status 2) before anything else runs.

    Args:
        minimum, maximum: the limits (see :func:`atso_nnunet.limits.limit_problem`).
        integer: a whole number (else a float, which must be finite).
        above_minimum: the value must be strictly above ``minimum``.
    """
    what = "a whole number" if integer else "a number"
    if above_minimum:
        span = f" above {minimum}" + (f" and at most {maximum}" if maximum is not None else "")
    else:
        span = f" from {minimum} to {maximum}" if maximum is not None else f" >= {minimum}"

    def parse(text: str):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}; give {what}{span}") from None
        problem = limit_problem(value, minimum, maximum, above_minimum)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem}; give {what}{span}")
        return value

    parse.__name__ = what   # argparse names the type in its own messages
    return parse


def folder(text: str) -> Path:
    """An argparse ``type``: a folder to read or create; refused when it (or a folder above it) is a file.

    ``--run-dir report.md`` stops the command with ``argument --run-dir: report.md is a file, not a
    folder; ...`` (exit status 2) before anything is created.
    """
    path = Path(text)
    for p in (path, *path.resolve().parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                where = "is a file" if p == path else f"is inside {p}, which is a file"
                raise argparse.ArgumentTypeError(f"{text} {where}, not a folder; give a folder (an existing one "
                                                 "or a new path)")
            break
    return path


def add_verbose_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


class _ListAction(argparse.Action):
    """A list option given as ``a b c`` or ``a,b,c`` (or both); each item must be one of ``choices``."""

    def __init__(self, option_strings: List[str], dest: str, allowed: Sequence[str] = (), **kwargs: Any):
        super().__init__(option_strings, dest, **kwargs)
        self.allowed = tuple(allowed)

    def __call__(self, parser, namespace, values, option_string=None):
        items = [v.strip() for value in values for v in value.split(",") if v.strip()]
        bad = [v for v in items if v not in self.allowed]
        if bad:
            parser.error(f"argument {option_string}: unknown {', '.join(map(repr, bad))}; "
                         f"choose from {', '.join(self.allowed)}")
        setattr(namespace, self.dest, items)


def add_list_option(parser: argparse.ArgumentParser, flag: str, choices: Sequence[str],
                    default: Optional[Sequence[str]], help: str, metavar: str) -> None:
    """A list option ``flag A [B ...]`` (``A B`` or ``A,B``), each item one of ``choices``."""
    parser.add_argument(flag, nargs="+", action=_ListAction, allowed=choices, metavar=metavar,
                        default=None if default is None else list(default),
                        help=f"{help}: one or more of {', '.join(choices)}, space- or comma-separated")


def add_views_option(parser: argparse.ArgumentParser, default: Optional[Sequence[str]], help: str) -> None:
    """``--views VIEW [VIEW ...]``, the same list syntax in every command."""
    add_list_option(parser, "--views", VIEWS, default, help, metavar="VIEW")


def setup_logging(verbose: bool = False) -> None:
    """Log lines with a timestamp to stderr (the driver adds its run log file itself)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def add_nnunet_dir_option(parser: argparse.ArgumentParser, raw_only: bool = False) -> None:
    """``--nnunet-dir DIR``; with ``raw_only`` (commands that write raw datasets) also the old ``--raw DIR``."""
    if raw_only:
        parser.add_argument("--nnunet-dir", type=folder, default=None, metavar="DIR",
                            help="write into DIR/nnUNet_raw instead of the folder of the nnUNet_raw environment "
                                 "variable")
        add_alias(parser, "--raw", "--nnunet-dir DIR (writes DIR/nnUNet_raw) or export nnUNet_raw", "raw",
                  type=folder)
        return
    parser.add_argument("--nnunet-dir", type=folder, default=None, metavar="DIR",
                        help="use DIR/nnUNet_raw, DIR/nnUNet_preprocessed, DIR/nnUNet_results instead of the "
                             "nnUNet_raw / nnUNet_preprocessed / nnUNet_results environment variables")


def raw_folder(args: argparse.Namespace) -> Path:
    """The ``nnUNet_raw`` folder: old ``--raw DIR``, else ``--nnunet-dir DIR``/nnUNet_raw, else ``$nnUNet_raw``.

    Raises:
        InputError: none of them is given.
    """
    if getattr(args, "raw", None) is not None:
        return Path(args.raw)
    if args.nnunet_dir is not None:
        return Path(args.nnunet_dir).resolve() / "nnUNet_raw"
    if os.environ.get("nnUNet_raw"):
        return Path(os.environ["nnUNet_raw"])
    raise InputError("no nnU-Net raw folder: pass --nnunet-dir DIR (uses DIR/nnUNet_raw) or export nnUNet_raw")


def nnunet_paths(nnunet_dir: Optional[Path]) -> NnUNetPaths:
    """The nnU-Net folders from ``--nnunet-dir`` or the environment; nothing is created (a run creates
    them once its checks have passed, so that a refused command leaves no empty folders).

    Raises:
        InputError: neither is given, or one of the three is a file.
    """
    paths = NnUNetPaths.under(nnunet_dir.resolve()) if nnunet_dir is not None else NnUNetPaths.from_env()
    for name, p in zip(("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"), (paths.raw, paths.preprocessed,
                                                                               paths.results)):
        if p.exists() and not p.is_dir():
            raise InputError(f"{name} {p} is a file, not a folder: move it away, or give another --nnunet-dir "
                             "(or export another folder)")
    return paths


def run_cli(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], Optional[int]],
            argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv``, set up logging, call ``run(args)``; a user error becomes its exit code.

    Every ``main(argv=None) -> int`` of the package goes through here, so an
    :class:`~atso_nnunet.errors.AtsoError` is always logged as one message (no traceback) and
    returned as :attr:`~atso_nnunet.errors.AtsoError.exit_code`.
    """
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "verbose", False))
    for note in getattr(args, "deprecated_options", None) or []:
        logger.warning("%s", note)
    try:
        return run(args) or 0
    except AtsoError as e:
        logger.error("%s", e)
        return e.exit_code
