"""``atso_nnunet_synth``: write a synthetic nnU-Net raw source dataset.

Example::

    atso_nnunet_synth --nnunet-dir work --dataset-id 980 --dataset-name SyntheticA --n-cases 30 --domain A

writes work/nnUNet_raw/Dataset980_SyntheticA (without ``--nnunet-dir``: into ``$nnUNet_raw``).
"""
from __future__ import annotations

import argparse
import logging
from typing import List, Optional

from atso_nnunet.cli.common import add_alias, add_nnunet_dir_option, add_verbose_option, number, plain, raw_folder, run_cli
from atso_nnunet.limits import DATASET_ID_MAX, DATASET_ID_MIN, SEED_MAX
from atso_nnunet.plan.sections import MAX_SYNTHETIC_CASES
from atso_nnunet.data.synthetic import DOMAIN_DEFAULTS, DOMAINS, SyntheticConfig, write_source_dataset

logger = logging.getLogger("atso_nnunet.synth")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="atso_nnunet_synth",
        description="Write a synthetic abdominal CT dataset (pancreas-like organ) as an nnU-Net raw dataset "
                    "<raw>/Dataset<id>_<name>: domain A is NIH-like (venous, labels 0/1), domain B MSD-like "
                    "(arterial, thicker slices, calibration offset, lesions labelled 2).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=plain(__doc__))
    add_nnunet_dir_option(parser, raw_only=True)
    parser.add_argument("--dataset-id", type=number(DATASET_ID_MIN, DATASET_ID_MAX), required=True, help="nnU-Net dataset id (1-999)")
    parser.add_argument("--dataset-name", default=None, help="dataset name (default: Synthetic<domain>)")
    add_alias(parser, "--name", "--dataset-name", "dataset_name")
    parser.add_argument("--n-cases", type=number(1, MAX_SYNTHETIC_CASES), default=30, help="number of cases (default: %(default)s)")
    add_alias(parser, "--cases", "--n-cases", "n_cases", type=number(1, MAX_SYNTHETIC_CASES))
    parser.add_argument("--domain", choices=DOMAINS, default="A", help="A (NIH-like) or B (MSD-like); default A")
    parser.add_argument("--seed", type=number(0, SEED_MAX), default=0, help="random seed (default: 0)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), default=None,
                        help="volume size in voxels (default: "
                             + ", ".join(f"{d}: {'x'.join(map(str, v['shape']))}" for d, v in DOMAIN_DEFAULTS.items())
                             + ")")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), default=None,
                        help="voxel size in mm (default: "
                             + ", ".join(f"{d}: {'x'.join(map(str, v['spacing']))}" for d, v in DOMAIN_DEFAULTS.items())
                             + ")")
    parser.add_argument("--case-prefix", default=None, help="case id prefix (default: syn<domain>)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset of the same name")
    add_verbose_option(parser)
    return parser


def _run(args) -> int:
    raw = raw_folder(args)
    config = SyntheticConfig(domain=args.domain, shape=tuple(args.shape) if args.shape else None,
                             spacing=tuple(args.spacing) if args.spacing else None, seed=args.seed)
    name = args.dataset_name or f"Synthetic{args.domain}"
    out = write_source_dataset(raw, args.dataset_id, name, args.n_cases, config,
                               case_prefix=args.case_prefix, overwrite=args.overwrite)
    print(out)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
