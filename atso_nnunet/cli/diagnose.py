"""``atso_nnunet_diagnose``: figures that say why a run scored as it did.

Label volumes, overlays in each view, what the students trained on, training curves and
intensities, written as PNG figures and ``diagnosis.md`` (see :mod:`atso_nnunet.evaluation.diagnosis`)::

    atso_nnunet_diagnose RUN_DIR [--out DIR] [--nnunet-dir DIR] [--cases N]

The nnU-Net folders come from ``--nnunet-dir``, else from ``nnUNet_raw`` / ``nnUNet_preprocessed``,
else from the links in the run's ``inputs/`` folder. Nothing in the run folder is changed.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from atso_nnunet.cli.common import add_nnunet_dir_option, add_verbose_option, folder, number, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="atso_nnunet_diagnose",
                                description="Diagnose a run folder: label volumes, overlays in each view, what "
                                            "the students trained on, training curves, intensities.")
    p.add_argument("run_dir", type=Path, help="an atso_nnunet run folder")
    p.add_argument("--out", type=folder, default=None, help="output folder (default RUN_DIR/diagnosis)")
    add_nnunet_dir_option(p)
    p.add_argument("--cases", type=number(1, 100), default=2, help="cases per overlay figure (default 2)")
    add_verbose_option(p)
    return p


def _run(args: argparse.Namespace) -> int:
    from atso_nnunet.evaluation.diagnosis import diagnose_run
    from atso_nnunet.paths import NnUNetPaths

    paths = NnUNetPaths.under(args.nnunet_dir) if args.nnunet_dir else None
    print(diagnose_run(args.run_dir, args.out, paths=paths, n_cases=args.cases))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
