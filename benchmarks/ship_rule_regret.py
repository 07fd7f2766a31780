#!/usr/bin/env python3
"""How the label-free ship rule does on every published comparison (issue 28, item 3).

For each semi-supervised run published under ``docs/benchmarks/<name>/seed<s>/<method>/`` the rule
``before_drift`` (:mod:`atso_nnunet.monitors.ship_rule`) picks a generation from the pseudo-label volume on R
alone; the table says how much test DSC that costs against the best generation by test (what the
paper picks, which a team without test labels cannot) and against always shipping T (what every
run did). Positive = points lost; negative = points gained.

Volumes: ``report.json``'s ``pseudo_label_volume_ml`` where the run recorded it; runs published
before the volume monitor existed have none, and their volumes are re-derived from the voxel
counts of the pseudo-labels in ``eval/R_g{t}/R.json`` (ratios only need counts; the scores in that
file are not read).

    python benchmarks/ship_rule_regret.py              # the Markdown table (docs/without_labels.md)
    python benchmarks/ship_rule_regret.py --volumes    # each run's volume ratio to M0 per generation
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from atso_nnunet.comparison.summary import final_score  # noqa: E402
from atso_nnunet.monitors.ship_rule import report_volumes, ship_generation  # noqa: E402

logger = logging.getLogger("ship_rule_regret")
COMMAND = "python benchmarks/ship_rule_regret.py"


def run_volumes(run_dir: Path, report: dict) -> Dict[int, Optional[float]]:
    """generation -> pseudo-label volume on R (mL from the report, else voxel counts from eval/R_g{t}/R.json)."""
    volumes = report_volumes(report)
    if any(v is not None for v in volumes.values()):
        return volumes
    out: Dict[int, Optional[float]] = {}
    for t in volumes:
        f = run_dir / "eval" / f"R_g{t}" / "R.json"
        data = json.loads(f.read_text()) if f.is_file() else {}
        cases = (data.get("details") or {}).get("cases")
        out[t] = float(sum(sum(c["voxels_pred"].values()) for c in cases)) if cases else None
    return out


def run_row(run_dir: Path) -> Optional[dict]:
    """The rule's choice and its cost for one run (None for a run without pseudo-labels after M0's)."""
    report = json.loads((run_dir / "report.json").read_text())
    gens = report.get("generations", [])
    last = max((g["generation"] for g in gens), default=0)
    if last < 1:
        return None
    score = {g["generation"]: g.get("test_dsc") for g in gens}
    score[last] = final_score(report)  # what generation T ships: the method's final model
    volumes = run_volumes(run_dir, report)
    if all(v is None for t, v in volumes.items() if t > 0):
        return None  # no pseudo-labels after M0's (the oracle learns from R's true labels)
    chosen = ship_generation(volumes, last, "before_drift")
    known = [v for v in score.values() if v is not None]
    if score.get(chosen) is None or not known:
        return None
    base = volumes.get(0)
    return {"comparison": run_dir.parents[1].name, "seed": run_dir.parent.name, "method": report["method"],
            "ships": chosen, "last": last, "shipped": score[chosen], "best": max(known), "at_last": score[last],
            "ratios": {t: (v / base if v is not None and base else None) for t, v in sorted(volumes.items())}}


def collect(root: Path) -> List[dict]:
    rows = []
    for report in sorted(root.glob("*/seed*/*/report.json")):
        row = run_row(report.parent)
        if row is not None:
            rows.append(row)
    return rows


def _pts(v: float) -> str:
    return f"{100 * v:+.1f}"


def render(rows: List[dict]) -> str:
    """The Markdown table: per comparison and method, then over every run."""
    out = [f"Made by `{COMMAND}` from the records under docs/benchmarks/ (test DSC points; positive = lost).", "",
           "| comparison | method | runs | generation shipped (per seed) | lost vs best generation by test "
           "(mean, max) | lost vs always T (mean, max) |", "|---|---|---:|---|---:|---:|"]
    groups: Dict[tuple, List[dict]] = {}
    for r in rows:
        groups.setdefault((r["comparison"], r["method"]), []).append(r)

    def cells(rs):
        best = [r["best"] - r["shipped"] for r in rs]
        last = [r["at_last"] - r["shipped"] for r in rs]
        return (f"{_pts(sum(best) / len(best))}, {_pts(max(best))} | "
                f"{_pts(sum(last) / len(last))}, {_pts(max(last))}")

    for (comparison, method), rs in groups.items():
        ships = ", ".join(f"{r['seed']}: G{r['ships']}" + ("" if r["ships"] < r["last"] else " (T)") for r in rs)
        out.append(f"| {comparison} | {method} | {len(rs)} | {ships} | {cells(rs)} |")
    if rows:
        moved = sum(r["ships"] != r["last"] for r in rows)
        out.append(f"| **all** | | {len(rows)} | {moved} run(s) not at T | {cells(rows)} |")
        out.append("")
        always_t = [r["best"] - r["at_last"] for r in rows]
        out.append(f"For scale, always shipping T loses {_pts(sum(always_t) / len(always_t))} points on average "
                   f"against the best generation by test (max {_pts(max(always_t))}).")
    return "\n".join(out) + "\n"


def render_volumes(rows: List[dict]) -> str:
    out = ["| comparison | seed | method | pseudo-label volume on R / M0's, G1 ... GT | rule ships |",
           "|---|---|---|---|---|"]
    for r in rows:
        ratios = " / ".join("–" if v is None else f"{v:.3f}" for t, v in r["ratios"].items() if t > 0)
        out.append(f"| {r['comparison']} | {r['seed']} | {r['method']} | {ratios} | G{r['ships']} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", type=Path, default=REPO / "docs" / "benchmarks",
                        help="folder of published comparisons (default: docs/benchmarks)")
    parser.add_argument("--volumes", action="store_true", help="print each run's volume ratios instead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    rows = collect(args.benchmarks)
    logger.info("%s", render_volumes(rows) if args.volumes else render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
