"""``atso_nnunet_view_volumes``: per-view and vote test DSC and volume of a finished tri-view run.

Prints one Markdown row per model (see :mod:`atso_nnunet.evaluation.view_volumes`)::

    atso_nnunet_view_volumes RUN_DIR --labels $nnUNet_raw/DatasetXXX_Name/labelsTs

Test labels are read, so run it only on a run that has finished.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from atso_nnunet.cli.common import add_verbose_option, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="atso_nnunet_view_volumes",
                                description="Per-view and vote test DSC and predicted/true volume of every "
                                            "model of a finished tri-view run.")
    p.add_argument("run_dir", type=Path, help="a finished atso_nnunet run folder")
    p.add_argument("--labels", type=Path, required=True, help="folder with the test cases' ground truth")
    add_verbose_option(p)
    return p


def _run(args: argparse.Namespace) -> int:
    from atso_nnunet.evaluation.view_volumes import view_volume_table

    print("\n".join(view_volume_table(args.run_dir, args.labels)))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
