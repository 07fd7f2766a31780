"""``atso_nnunet_convert``: public pancreas CT datasets -> nnU-Net raw source datasets.

    atso_nnunet_convert nih --dicom-root DIR --labels-root DIR [--nnunet-dir DIR] [--dataset-id 801]
    atso_nnunet_convert msd --task-folder DIR [--nnunet-dir DIR] [--dataset-id 802]

The datasets are written into ``$nnUNet_raw`` (or ``<--nnunet-dir>/nnUNet_raw``, as for
``atso_nnunet_run``).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

from atso_nnunet.data.layout import dataset_folder_name
from atso_nnunet.cli.common import add_nnunet_dir_option, add_verbose_option, number, plain, raw_folder, run_cli
from atso_nnunet.limits import DATASET_ID_MAX, DATASET_ID_MIN, PROCESSES_MAX
from atso_nnunet.data.msd import MSD_DATASET_ID, MSD_EVAL_LABEL_MAP, convert_msd
from atso_nnunet.data.nih import NIH_DATASET_ID, NIH_DATASET_NAME, SERIES_RULES, convert_nih


logger = logging.getLogger("atso_nnunet.convert")
# the range the plans allow (nnU-Net's three-digit ids)
DATASET_ID = number(DATASET_ID_MIN, DATASET_ID_MAX)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="atso_nnunet_convert",
        description="Convert NIH Pancreas-CT (TCIA DICOM + NIfTI labels) or MSD Task07 Pancreas "
                    "into nnU-Net raw datasets (the sources of the ATSO experiment plans).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=plain(__doc__))
    add_verbose_option(parser)
    sub = parser.add_subparsers(dest="dataset", required=True, metavar="{nih,msd}",
                                help="which public dataset to convert")

    nih = sub.add_parser("nih", help="NIH Pancreas-CT -> Dataset801_NIHPancreas")
    nih.add_argument("--dicom-root", type=Path, required=True,
                     help="TCIA download: the folder holding Pancreas-CT/PANCREAS_XXXX (or Pancreas-CT itself)")
    nih.add_argument("--labels-root", type=Path, required=True,
                     help="folder with labelXXXX.nii.gz (TCIA_pancreas_labels-02-05-2017)")
    add_nnunet_dir_option(nih, raw_only=True)
    nih.add_argument("--dataset-id", type=DATASET_ID, default=NIH_DATASET_ID, help="nnU-Net dataset id (default %(default)s)")
    nih.add_argument("--cases", nargs="+", default=None, metavar="NIH_XXXX",
                     help="convert only these cases (default: every patient found)")
    nih.add_argument("--series-rule", choices=SERIES_RULES, default=None,
                     help="how to pick one series when a patient folder holds several (default: error)")

    msd = sub.add_parser("msd", help="MSD Task07 Pancreas -> Dataset802_MSDPancreas (nnU-Net's MSD converter)")
    msd.add_argument("--task-folder", type=Path, required=True, help="unpacked Task07_Pancreas folder")
    add_nnunet_dir_option(msd, raw_only=True)
    msd.add_argument("--dataset-id", type=DATASET_ID, default=MSD_DATASET_ID, help="nnU-Net dataset id (default %(default)s)")
    msd.add_argument("--num-processes", type=number(1, PROCESSES_MAX), default=2,
                     help="processes for nnU-Net's MSD conversion (default %(default)s)")
    for p in (nih, msd):  # -v after the subcommand too; SUPPRESS keeps a -v given before it
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    return parser


def _run(args) -> int:
    raw = raw_folder(args)
    if args.dataset == "nih":
        out = raw / dataset_folder_name(args.dataset_id, NIH_DATASET_NAME)
        report = convert_nih(args.dicom_root, args.labels_root, out, cases=args.cases, series_rule=args.series_rule)
        logger.info("%s: %d cases (%d labels reoriented, see conversion_report.json)",
                    out, len(report.cases), len(report.flipped))
    else:
        out = convert_msd(args.task_folder, raw, args.dataset_id, num_processes=args.num_processes)
        logger.info("%s ready; evaluate pancreas with label map %s (tumour counts as pancreas)",
                    out, MSD_EVAL_LABEL_MAP)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
