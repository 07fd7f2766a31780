"""Issue 25, item 7 on a published seed: which controls the rule fixed in advance asks for, from the records alone.

The rule (docs/lab/benchmarks.md, "Item 7 on seeds 1 and 2", committed before those seeds had any
semi-supervised result) is applied here mechanically, so that what runs after a seed is published is
not chosen by whoever reads its scores:

- trigger: ATSO's final test DSC on E below labeled-only's or below STSO's (any amount);
- first check: ATSO's M_1 on E equals STSO's G1 student on E (same labels, settings and training seed);
- control A (pseudo-labels' size): on every triggered seed, `control_volume_prior.py` on its STSO run;
- control B (one training's spread): where ATSO's final is at least 2 points below its M_T-1 on E,
  `control_training_seed.py` on its ATSO run.

    python benchmarks/item7_decide.py docs/benchmarks/r1 --seed 1 [--runs /work/bench/r1]

Prints the figures it read, the decisions and the commands (run folders under ``--runs``, the controls'
work folders beside it: ``<runs>_control_s<seed>``, ``<runs>_control_atso_s<seed>``); exits 1 when
the seed is not published.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from atso_nnunet.comparison.summary import final_score  # noqa: E402
from control_training_seed import other_seeds, run_final_seed  # noqa: E402

FALL_FOR_CONTROL_B = 2.0  # points of test DSC, as for seed 0


def generation_score(report: dict, t: int) -> Optional[float]:
    for g in report.get("generations", []):
        if g.get("generation") == t:
            return g.get("test_dsc")
    return None


def decide(published: Path, seed: int) -> Dict[str, object]:
    """The rule's decisions for one seed, with the scores (DSC in %) they rest on."""
    reports = {}
    for method in ("supervised", "stso", "atso"):
        path = published / f"seed{seed}" / method / "report.json"
        if not path.is_file():
            raise SystemExit(f"item7_decide: {path} is missing: seed {seed} is not published (all five runs) yet")
        reports[method] = json.loads(path.read_text())
    pct = lambda x: None if x is None else round(100 * x, 3)  # noqa: E731
    atso, lo, stso = (pct(final_score(reports[m])) for m in ("atso", "supervised", "stso"))
    T = int(reports["atso"]["final_label_round"])
    m1_atso, g1_stso = pct(generation_score(reports["atso"], 1)), pct(generation_score(reports["stso"], 1))
    m_prev = pct(generation_score(reports["atso"], T - 1))
    triggered = atso < lo or atso < stso
    plan = published / f"seed{seed}" / "atso" / "plan.json"
    own = run_final_seed(json.loads(plan.read_text())) if plan.is_file() else None
    return {
        "seed": seed, "atso_final": atso, "labeled_only": lo, "stso_final": stso,
        "atso_M1": m1_atso, "stso_G1": g1_stso, "m1_equals_stso_g1": m1_atso == g1_stso,
        "atso_M_T-1": m_prev, "T": T,
        "triggered": triggered,
        "control_a": triggered,
        "control_b": triggered and m_prev is not None and atso <= m_prev - FALL_FOR_CONTROL_B,
        "final_seeds": other_seeds(own),  # control B's retrained finals: not the run's own training seed
    }


def commands(d: Dict[str, object], runs: Path) -> List[str]:
    s = d["seed"]
    out = []
    if d["control_a"]:
        out.append(f".venv/bin/python benchmarks/control_volume_prior.py --stso-run {runs}/seed{s}/stso "
                   f"--work {runs}_control_s{s} --cpu-jobs 2")
    if d["control_b"]:
        out.append(f".venv/bin/python benchmarks/control_training_seed.py --run {runs}/seed{s}/atso "
                   f"--work {runs}_control_atso_s{s} --final-seeds {' '.join(map(str, d['final_seeds']))}")
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("published", type=Path, help="a published comparison folder, e.g. docs/benchmarks/r1")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--runs", type=Path, default=Path("/work/bench/r1"), help="where the seed's run folders are")
    args = p.parse_args(argv)
    d = decide(args.published, args.seed)
    print(f"seed {d['seed']}, test DSC on E: ATSO final {d['atso_final']:.1f}, labeled-only {d['labeled_only']:.1f}, "
          f"STSO final {d['stso_final']:.1f}; ATSO M_{d['T'] - 1} {d['atso_M_T-1']:.1f}")
    print(f"first check, ATSO M_1 = STSO G1 on E: {d['atso_M1']} vs {d['stso_G1']}: "
          + ("equal" if d["m1_equals_stso_g1"] else "DIFFERENT: report this before anything else"))
    if not d["triggered"]:
        print("not triggered: ATSO's final is at or above both labeled-only and STSO; no control runs")
        return 0
    print("triggered: control A" + (", control B" if d["control_b"] else
                                     f" (control B not: ATSO's final is less than {FALL_FOR_CONTROL_B:g} below its M_T-1)"))
    print("\n".join(commands(d, args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
