"""The report's "Without labels" section: what a team with no ground truth can read from its run.

Per generation the label-free monitors (pseudo-label volume on R and its ratios, the vote's
volume against its views', change, agreement, empty labels), the drift verdict
(:mod:`atso_nnunet.monitors.drift`), the cases the stability filter left out (:mod:`atso_nnunet.monitors.stability`)
and the generation the rule ``before_drift`` would ship (:mod:`atso_nnunet.monitors.ship_rule`), next to
the generation the plan ships. Nothing here reads a score against ground truth except where it
says so: the shipped generation's test DSC, shown when the run has one.
"""
from __future__ import annotations

import io
from typing import Optional

from atso_nnunet.monitors.drift import DRIFT_THRESHOLD, drift_verdict
from atso_nnunet.monitors.ship_rule import ship_generation


def _last(report) -> int:
    if report.last_generation is not None:
        return report.last_generation
    return max((g.generation for g in report.generations), default=0)


def _test_dsc_of(report, t: int) -> Optional[float]:
    """Test DSC (the plan's metric) of what generation t ships: the final model at T."""
    if t == _last(report) and report.final and report.final.get(f"test_dsc_{report.metric}") is not None:
        return report.final[f"test_dsc_{report.metric}"]
    return next((g.test_dsc for g in report.generations if g.generation == t), None)


def summary(report) -> Optional[dict]:
    """The section as JSON (``report.json``'s ``without_labels``); None for a run without pseudo-labels."""
    volumes = {g.generation: g.pseudo_label_volume_ml for g in report.generations}
    if not any(v is not None for v in volumes.values()):
        return None
    m0 = next((g.vote_vs_views for g in report.generations if g.generation == 0), None)
    verdict = drift_verdict(volumes, DRIFT_THRESHOLD, vote_vs_views=m0)
    last = _last(report)
    before = ship_generation(volumes, last, "before_drift")
    shipped = ship_generation(volumes, last, report.ship_generation)
    model = report.ship_models.get(shipped)
    return {"drift": {"drifted": verdict.drifted, "first_generation": verdict.first_generation,
                      "threshold": DRIFT_THRESHOLD, "words": verdict.words},
            "vs_labeled": {str(g.generation): g.volume_vs_labeled for g in report.generations
                           if g.volume_vs_labeled is not None},
            "unstable_cases": {str(g.generation): g.unstable_cases for g in report.generations
                               if g.unstable_cases is not None},
            "ship": {"rule": report.ship_generation, "generation": shipped, "before_drift": before,
                     "model": model, "test_dsc": _test_dsc_of(report, shipped)}}


def _pct(v: Optional[float]) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def _ml(v: Optional[float]) -> str:
    return "–" if v is None else f"{v:.1f}"


def render_without_labels(report) -> str:
    """The Markdown section (empty for a run without pseudo-labels, or one made before the volume monitor)."""
    s = summary(report)
    if s is None:
        return ""
    out = io.StringIO()
    out.write("\n## Without labels\n\n")
    out.write("What this run says with no ground truth at all: the pseudo-labels' foreground volume on R per "
              "generation, against M0's pseudo-labels (G0) and the previous generation's; 'vote / views': the "
              "fused label's volume over the mean volume of the predictions it was fused from (median over cases; "
              "a vote that keeps much less than its views feeds a shrinking loop); 'vs labeled': the mean volume a case "
              "over the labeled cases' mean organ volume (far below 1: the teacher misses part of the organ, and its "
              "students learn the smaller organ; see docs/without_labels.md); change and agreement as above.\n\n")
    ak = []
    for g in report.generations:
        ak += [k for k in g.agreement if k not in ak]
    out.write("| Generation | volume on R (mL) | vs M0 | vs previous | vs labeled | vote / views | change | "
              + "".join(f"agreement {k} | " for k in ak) + "empty | left out (stability) |\n")
    out.write("|---" * (9 + len(ak)) + "|\n")
    for g in report.generations:
        left = "–" if g.unstable_cases is None else (", ".join(g.unstable_cases) or "none")
        out.write(f"| G{g.generation} | {_ml(g.pseudo_label_volume_ml)} | {_pct(g.volume_vs_m0)} | "
                  f"{_pct(g.volume_vs_previous)} | {_pct(g.volume_vs_labeled)} | {_pct(g.vote_vs_views)} | "
                  f"{_pct(g.change)} | "
                  + "".join(f"{_pct(g.agreement.get(k))} | " for k in ak)
                  + f"{'–' if g.empty_pseudo_labels is None else g.empty_pseudo_labels} | {left} |\n")
    drift = s["drift"]
    out.write(f"\n**Drift ({'warning' if drift['drifted'] else 'none'}).** {drift['words'][0].upper()}"
              f"{drift['words'][1:]} (Warning threshold: a loss of {100 * drift['threshold']:.0f} % of M0's "
              "pseudo-label volume, chosen on the published benchmark runs; see docs/without_labels.md.)\n")
    if s["unstable_cases"]:
        out.write("\n**Stability filter.** Left out of the trainings that learn from each generation's "
                  "pseudo-labels (their labels changed most since the previous round): "
                  + "; ".join(f"G{t}: {', '.join(c) if c else 'none'}" for t, c in s["unstable_cases"].items())
                  + ".\n")
    ship = s["ship"]
    score = "" if ship["test_dsc"] is None else f" (its test DSC: {100 * ship['test_dsc']:.1f})"
    out.write(f"\n**Generation to ship without labels.** The rule 'before_drift' (the last generation before the "
              f"pseudo-labels drift) would ship G{ship['before_drift']}; this plan's rule '{ship['rule']}' ships "
              f"G{ship['generation']}{score}"
              + (f": atso_nnunet_segment uses its model {ship['model']!r}" if ship["model"] else "") + ".\n")
    return out.getvalue()
