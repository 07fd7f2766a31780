"""Publish a comparison without its models: every run's score records, and the tables re-derived from them.

A comparison's run folders hold gigabytes of models, predictions and pseudo-labels; the numbers
of its tables come from a few kilobytes of each: the run's report, its per-case scores, the plan
it resolved and its log. :func:`publish_comparison` copies exactly those into ``<dst>/seed<s>/<method>/``
(the layout of the comparison itself) and writes ``<dst>/comparison.{md,csv,json,png}`` from the
copies alone, so what is published is by construction what its records say, and anyone can
re-derive it::

    atso_nnunet_compare -d synthetic -f bench_10pct --seeds 0 1 2 --out docs/benchmarks/10pct --report-only

Nothing is half-written after a failure: the records are gathered in a staging folder inside
``dst`` first, and each run's published folder is replaced only once everything is copied. A
publication replaces an earlier publication, never a run folder; it is marked (``published.json``
in ``dst`` and in each run's records) so that neither ``atso_nnunet_compare`` without
``--report-only`` nor ``atso_nnunet_run`` mistakes it for a run to continue.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import List

from atso_nnunet.comparison.run import RunRecord, read_records
from atso_nnunet.errors import InputError
from atso_nnunet.io import read_json, write_json
from atso_nnunet.run.rundir import PUBLISHED

logger = logging.getLogger(__name__)

# what the tables are made of, relative to a run folder (report.png and the models stay behind)
RECORD_FILES = ("report.json", "report.md", "report.csv", "report_logs.md", "plan.json", "g0_key.json",
                "run.log", "state/report.done")
# per-case scores and label-free monitors
RECORD_TREES = ("eval",)
RECORD_SUFFIXES = (".json", ".csv")


def record_files(run_dir: Path) -> List[Path]:
    """The record files of one run folder, relative to it (links followed: adopted G0 scores)."""
    run_dir = Path(run_dir)
    found = [Path(f) for f in RECORD_FILES if (run_dir / f).is_file()]
    for tree in RECORD_TREES:
        for folder, _, files in os.walk(run_dir / tree, followlinks=True):
            rel = Path(folder).relative_to(run_dir)
            found += [rel / f for f in sorted(files)  # (a dangling link is no record)
                      if f.endswith(RECORD_SUFFIXES) and not f.startswith(".") and (Path(folder) / f).is_file()]
    return sorted(found)


def publish_comparison(src: Path, dst: Path) -> List[RunRecord]:
    """Copy the score records of the comparison under ``src`` to ``dst`` and write its tables there.

    The seeds, methods, plan name and reproducing command are those of ``src/comparison.json``
    (written by ``atso_nnunet_compare``, also with ``--report-only``).

    Raises:
        InputError: ``src`` has no comparison, ``dst`` is ``src`` or lies inside one of its run
            folders, ``dst`` holds run folders that are not published records, or a run named by
            the comparison has no report.
    """
    from atso_nnunet.comparison import report as comparison_report

    src, dst = Path(src).resolve(), Path(dst).resolve()
    summary = read_json(src / "comparison.json")
    if summary is None:
        raise InputError(f"{src}: no comparison.json; run atso_nnunet_compare (or add --report-only) first")
    if dst == src or any(dst.is_relative_to(src / f"seed{s}") for s in summary["seeds"]):
        raise InputError(f"publish to a folder outside the comparison's run folders, not {dst}")
    seeds, methods = summary["seeds"], summary["methods"]
    records = read_records(src, seeds, methods)
    named = {(r["seed"], r["method"]) for r in summary["runs"]}
    missing = sorted(named - {(r.seed, r.method) for r in records})
    if missing:
        raise InputError(f"{src}: run(s) without a report: "
                         + ", ".join(f"seed{s}/{m}" for s, m in missing))
    unfinished = [f"seed{r.seed}/{r.method}" for r in records if not r.finished]
    if unfinished:
        logger.warning("published as unfinished (no final score): %s", ", ".join(unfinished))

    # a publication replaces an earlier publication's records, never a run (its models would be lost)
    runs_there = [f"seed{r.seed}/{r.method}" for r in records if (dst / f"seed{r.seed}" / r.method).exists()
                  and not (dst / f"seed{r.seed}" / r.method / PUBLISHED).is_file()]
    if runs_there:
        raise InputError(f"{dst} holds run folders that are not published records ({', '.join(runs_there)}); "
                         "publish to another folder")
    dst.mkdir(parents=True, exist_ok=True)
    staging = dst / f".publishing-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        n = 0
        when = time.strftime("%Y-%m-%d %H:%M:%S")
        for r in records:
            for rel in record_files(r.run_dir):
                target = staging / f"seed{r.seed}" / r.method / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(r.run_dir / rel, target)
                n += 1
            # no driver runs or continues a folder of records (it would overwrite them with fresh runs)
            write_json({"from": str(r.run_dir), "published": when}, staging / f"seed{r.seed}" / r.method / PUBLISHED)
        for r in records:
            final = dst / f"seed{r.seed}" / r.method
            final.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(staging / f"seed{r.seed}" / r.method, final)
        write_json({"from": str(src), "published": when, "command": summary["command"]}, dst / PUBLISHED)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("published %d record file(s) of %d run(s) to %s", n, len(records), dst)
    published = read_records(dst, seeds, methods)
    comparison_report.write_comparison(published, dst, plan_name=summary["plan"], command=summary["command"])
    return published
