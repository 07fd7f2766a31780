"""Diagnose a run folder: label volumes, overlays in each view, training curves, intensities.

Writes PNG figures and ``diagnosis.md`` (see :mod:`atso_nnunet.evaluation.diagnosis`)::

    .venv/bin/python scripts/diagnose_run.py RUN_DIR [--out DIR] [--nnunet-dir DIR] [--cases N]

The nnU-Net folders come from ``--nnunet-dir``, else from ``nnUNet_raw`` / ``nnUNet_preprocessed``,
else from the links in the run's ``inputs/`` folder.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from atso_nnunet.evaluation.diagnosis import diagnose_run
from atso_nnunet.errors import AtsoError
from atso_nnunet.paths import NnUNetPaths


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="an atso_nnunet run folder")
    p.add_argument("--out", type=Path, default=None, help="output folder (default RUN_DIR/diagnosis)")
    p.add_argument("--nnunet-dir", type=Path, default=None,
                   help="use DIR/nnUNet_raw and DIR/nnUNet_preprocessed")
    p.add_argument("--cases", type=int, default=2, help="cases per overlay figure (default 2)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    paths = NnUNetPaths.under(args.nnunet_dir) if args.nnunet_dir else None
    try:
        summary = diagnose_run(args.run_dir, args.out, paths=paths, n_cases=args.cases)
    except AtsoError as e:
        print(f"diagnose_run: {e}", file=sys.stderr)
        return 2
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
