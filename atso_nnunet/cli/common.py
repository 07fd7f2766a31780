"""Pieces shared by the command-line tools: logging set-up and the nnU-Net folders option."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Callable, Optional, Sequence

from atso_nnunet.errors import AtsoError
from atso_nnunet.paths import NnUNetPaths


def setup_logging(verbose: bool = False) -> None:
    """Log lines with a timestamp to stderr (the driver adds its run log file itself)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def add_nnunet_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nnunet-dir", type=Path, default=None, metavar="DIR",
                        help="use DIR/nnUNet_raw, DIR/nnUNet_preprocessed, DIR/nnUNet_results instead of the "
                             "nnUNet_raw / nnUNet_preprocessed / nnUNet_results environment variables")


def nnunet_paths(nnunet_dir: Optional[Path]) -> NnUNetPaths:
    """The nnU-Net folders from ``--nnunet-dir`` or the environment (InputError if neither)."""
    if nnunet_dir is not None:
        paths = NnUNetPaths.under(nnunet_dir.resolve())
        paths.makedirs()
        return paths
    return NnUNetPaths.from_env()


def run_cli(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], Optional[int]],
            argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv``, set up logging, call ``run(args)``; a user error becomes its exit code.

    Every ``main(argv=None) -> int`` of the package goes through here, so an
    :class:`~atso_nnunet.errors.AtsoError` is always logged as one message (no traceback) and
    returned as :attr:`~atso_nnunet.errors.AtsoError.exit_code`.
    """
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "verbose", False))
    try:
        return run(args) or 0
    except AtsoError as e:
        logging.getLogger("atso_nnunet").error("%s", e)
        return e.exit_code
