"""``atso_nnunet_check``: check a raw dataset (experiment or plain nnU-Net) and print a summary.

Exit status 0 when the dataset is fine (warnings, e.g. a labeled case without foreground, are
printed with the summary), 2 (listing every problem) when it is not.

Example::

    atso_nnunet_check $nnUNet_raw/Dataset981_Synth10pct
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from atso_nnunet.cli.common import add_list_option, run_cli
from atso_nnunet.data.checks import ROLES, check_raw_dataset


logger = logging.getLogger("atso_nnunet.check")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="atso_nnunet_check",
        description="Check a raw dataset before planning / training: dataset.json, missing images or labels, "
                    "numTraining, geometry of image/label pairs, label values, 2D/4D files, truncated files, NaN/Inf "
                    "voxels, labeled cases without foreground (warning). Lists every problem.")
    parser.add_argument("dataset_dir", type=Path, help="the dataset folder, nnUNet_raw/DatasetXXX_Name")
    add_list_option(parser, "--roles", ROLES, default=ROLES, metavar="ROLE",
                    help="sets to check (default: all): labeled=imagesTr, reference=imagesRef, test=imagesTs")
    parser.add_argument("--no-geometry", action="store_true", help="skip the image/label geometry comparison")
    parser.add_argument("--no-label-values", action="store_true", help="do not load label voxels to check values")
    parser.add_argument("--headers-only", action="store_true",
                        help="read headers only: skip the voxel pass that finds truncated files and NaN/Inf "
                             "voxels (about one decompression per file; see docs/lab/benchmarks.md)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _run(args) -> int:
    summary = check_raw_dataset(args.dataset_dir, roles=tuple(args.roles), check_geometry=not args.no_geometry,
                                check_label_values=not args.no_label_values, check_voxels=not args.headers_only)
    print(summary.describe())
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
