"""``atso_nnunet_publish``: a comparison without its models (run records and tables), e.g. into docs/.

Copies each run's report, per-case scores, resolved plan and log (kilobytes, not the models) from
a comparison folder into ``DST/seed<s>/<method>/`` and writes ``DST/comparison.{md,csv,json,png}``
from those copies alone (see :mod:`atso_nnunet.comparison.publish`)::

    atso_nnunet_publish BENCH/10pct docs/benchmarks/10pct

Anyone can then re-derive the published tables from the published records, without the runs::

    atso_nnunet_compare -d synthetic -f bench_10pct --seeds 0 1 2 --out docs/benchmarks/10pct --report-only
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from atso_nnunet.cli.common import add_verbose_option, plain, run_cli
from atso_nnunet.comparison.publish import publish_comparison


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="atso_nnunet_publish", description=plain(__doc__.splitlines()[0]))
    p.add_argument("src", type=Path, help="a comparison folder (atso_nnunet_compare --out)")
    p.add_argument("dst", type=Path, help="where the records and tables go (e.g. docs/benchmarks/10pct)")
    add_verbose_option(p)
    return p


def _run(args: argparse.Namespace) -> int:
    records = publish_comparison(args.src, args.dst)
    print(f"{len(records)} run(s) published: {args.dst / 'comparison.md'}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
