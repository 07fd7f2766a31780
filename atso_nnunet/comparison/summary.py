"""The numbers of a comparison (:func:`summarise`): final scores per method and seed, mean ± sd,
paired differences within a seed, the share of the labeled-only -> oracle gap, the label-free
monitors against the truth, and the runs whose M0 differs. Rendering is in
:mod:`atso_nnunet.comparison.report`.
"""
from __future__ import annotations

import logging
import math
from typing import Dict, Optional, Sequence, Tuple

from atso_nnunet.methods import baseline_method, comparison_pairs, methods_in_role

logger = logging.getLogger(__name__)



def _mean_sd(values: Sequence[float]) -> Tuple[Optional[float], Optional[float], int]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None, 0
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
    return m, sd, len(vals)


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> Optional[float]:
    pts = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    if len(pts) < 3:
        return None
    mx, my = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    syy = sum((p[1] - my) ** 2 for p in pts)
    if sxx == 0 or syy == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / math.sqrt(sxx * syy)


def _ranks(values: Sequence[float]) -> list:
    """Ranks from 1, ties given their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _spearman(xs: Sequence[float], ys: Sequence[float]) -> Optional[float]:
    """Spearman's rank correlation (Pearson's r of the ranks, ties averaged); None as for :func:`_pearson`."""
    pts = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    if len(pts) < 3:
        return None
    return _pearson(_ranks([p[0] for p in pts]), _ranks([p[1] for p in pts]))


#: label-free monitors of report.json's generations set against the pseudo-labels' true DSC
#: ("Without labels"); volume: the pseudo-labels' volume on R over M0's (atso_nnunet.monitors.drift)
LABEL_FREE = {"change": "change", "empty": "empty_pseudo_labels", "volume vs M0": "volume_vs_m0"}


def without_labels(by: Dict[Tuple[str, int], dict]) -> dict:
    """Pearson and Spearman correlation of each label-free monitor with the pseudo-label DSC on R, across
    generations >= 1 x seeds x methods (runs with ground truth on R), and each run's drift verdict."""
    points: Dict[str, list] = {k: [] for k in ("reference", "agreement", *LABEL_FREE)}
    verdicts = []
    for (m, s), rep in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        for g in rep.get("generations", []):
            if g["generation"] == 0:
                continue
            points["reference"].append(g.get("reference_dsc"))
            a = [v for v in (g.get("agreement") or {}).values() if v is not None]
            points["agreement"].append(sum(a) / len(a) if a else None)
            for k, field in LABEL_FREE.items():
                points[k].append(g.get(field))
        drift = (rep.get("without_labels") or {}).get("drift")
        if drift:
            verdicts.append({"method": m, "seed": s, "drifted": drift["drifted"],
                             "first_generation": drift["first_generation"]})
    monitors = [k for k in points if k != "reference"]
    return {"pearson": {k: _pearson(points["reference"], points[k]) for k in monitors},
            "spearman": {k: _spearman(points["reference"], points[k]) for k in monitors},
            "n": {k: sum(1 for x, y in zip(points["reference"], points[k]) if x is not None and y is not None)
                  for k in monitors},
            "drift": verdicts}


def final_score(report: Optional[dict]) -> Optional[float]:
    """Test DSC (the plan's metric) of a run's result: its final model, else its last generation."""
    if not report:
        return None
    metric = report.get("metric", "mean")
    final = report.get("final") or {}
    if final.get(f"test_dsc_{metric}") is not None:
        return final[f"test_dsc_{metric}"]
    gens = [g for g in report.get("generations", []) if g.get("test_dsc") is not None]
    return gens[-1]["test_dsc"] if gens else None


def same_m0(a: Optional[float], b: Optional[float]) -> bool:
    """Whether two runs of a seed started from the same M0, judged by their generation-0 test DSC.

    Within a comparison every method of a seed adopts the labeled-only run's M0 and its scores, so
    the two numbers are the same float; a different number means another training of M0 (one
    retrained after its folder was lost, where the first had been resumed with ``--c``, which does not
    reproduce an uninterrupted training), whose difference to the others would mix that into the
    method's effect. Unknown counts as same.
    """
    return a is None or b is None or abs(a - b) < 1e-9


def different_m0(g0: Dict[Tuple[str, int], Optional[float]]) -> list:
    """The runs whose M0 is not their seed's labeled-only M0 (they are left out of the paired differences)."""
    baseline = baseline_method()
    return [{"seed": s, "method": m, "m0_test_dsc": v, "labeled_only_m0_test_dsc": g0.get((baseline, s))}
            for (m, s), v in sorted(g0.items(), key=lambda kv: (kv[0][1], kv[0][0]))
            if m != baseline and not same_m0(v, g0.get((baseline, s)))]


def summarise(records) -> dict:
    """The comparison as JSON-able data (see the module docstring)."""
    by = {(r.method, r.seed): r.report for r in records if r.report}
    methods = list(dict.fromkeys(r.method for r in records))
    seeds = sorted({r.seed for r in records})
    # an unfinished run has no result yet (its last scored generation may be the shared M0)
    finished = {(r.method, r.seed) for r in records if r.report and r.finished}
    per_gen: Dict[str, Dict[int, dict]] = {}
    for m in methods:
        # Every point of a method's curve is a mean over the same seeds: those whose run finished.
        # (Mixing them, a seed still training would count at G0 and nowhere after, and the step
        # G0 -> G1 would carry that seed's M0 rather than what the method did.) The per-seed values
        # of unfinished runs stay in ``per_seed`` (and the CSV).
        done = [i for i, s in enumerate(seeds) if (m, s) in finished]
        gens = sorted({g["generation"] for (mm, _), rep in by.items() if mm == m for g in rep.get("generations", [])})
        per_gen[m] = {}
        for t in gens:
            def vals(key):
                return [next((g.get(key) for g in (by.get((m, s)) or {}).get("generations", [])
                              if g["generation"] == t), None) for s in seeds]
            row = {"test": vals("test_dsc"), "reference": vals("reference_dsc"), "change": vals("change"),
                   "empty": vals("empty_pseudo_labels"), "volume_vs_m0": vals("volume_vs_m0"),
                   "vote_vs_views": vals("vote_vs_views")}
            agree = []
            for s in seeds:
                g = next((g for g in (by.get((m, s)) or {}).get("generations", []) if g["generation"] == t), None)
                a = [v for v in ((g or {}).get("agreement") or {}).values() if v is not None]
                agree.append(sum(a) / len(a) if a else None)
            row["agreement"] = agree
            truth = {r.seed: r.volume_vs_truth.get(t) for r in records if r.method == m}
            row["volume_vs_truth"] = [truth.get(s) for s in seeds]
            per_gen[m][t] = {k: {"per_seed": v, **dict(zip(("mean", "sd", "n"), _mean_sd([v[i] for i in done])))}
                             for k, v in row.items()}
    finals = {m: {s: final_score(by.get((m, s))) if (m, s) in finished else None for s in seeds} for m in methods}
    final_stats = {m: dict(zip(("mean", "sd", "n"), _mean_sd(list(v.values())))) for m, v in finals.items()}
    # generation 0's test score per run, from the curves above (the same float for every run on one M0)
    g0 = {(m, s): per_gen[m][0]["test"]["per_seed"][i] for m in methods if 0 in per_gen[m] for i, s in enumerate(seeds)}
    other_m0 = different_m0(g0)
    pairs = {}
    for a, b in comparison_pairs():
        if a in finals and b in finals:
            d = [finals[a][s] - finals[b][s] if finals[a][s] is not None and finals[b][s] is not None
                 and same_m0(g0.get((a, s)), g0.get((b, s))) else None for s in seeds]
            mean, sd, n = _mean_sd(d)
            pairs[f"{a}-{b}"] = {"per_seed": d, "mean": mean, "sd": sd, "n": n,
                                 "positive": sum(1 for x in d if x is not None and x > 0)}
    points = {"reference": [], "change": [], "agreement": [], "empty": []}
    for m in methods:
        for t, row in per_gen[m].items():
            if t == 0:
                continue
            for i in range(len(seeds)):
                for k in points:
                    points[k].append(row[k]["per_seed"][i] if k in row else None)
    correlation = {k: _pearson(points["reference"], points[k]) for k in ("change", "agreement", "empty")}
    # what each method's final model learned from and what its run trains (the same for every seed)
    cost = {}
    for m in methods:
        rep = next((by[(m, s)] for s in seeds if (m, s) in by and by[(m, s)].get("cost")), None)
        cost[m] = {"final_label_round": rep.get("final_label_round"), **rep["cost"]} if rep else None
    labeled_only = final_stats.get(baseline_method(), {}).get("mean")
    bounds = methods_in_role("bound")
    oracle = final_stats.get(bounds[0], {}).get("mean") if bounds else None
    # each method's share of its seed's labeled-only -> oracle gap (the paper: ATSO 73 % at 10 %)
    gap_share = {}
    baseline, bound = baseline_method(), (bounds[0] if bounds else None)
    if baseline in finals and bound in finals:
        for m in methods:
            if m in (baseline, bound):
                continue
            per = []
            for s in seeds:
                lo, orc, v = finals[baseline][s], finals[bound][s], finals[m][s]
                ok = None not in (lo, orc, v) and orc != lo and same_m0(g0.get((m, s)), g0.get((baseline, s)))
                per.append((v - lo) / (orc - lo) if ok else None)
            gap_share[m] = {"per_seed": per, **dict(zip(("mean", "sd", "n"), _mean_sd(per)))}
    return {"methods": methods, "seeds": seeds, "per_generation": per_gen, "final": {"per_seed": finals,
            "stats": final_stats}, "paired_differences": pairs, "monitor_correlation": correlation,
            "monitor_points": points, "without_labels": without_labels(by), "cost": cost, "gap_share": gap_share,
            "labeled_only": labeled_only, "oracle": oracle, "different_m0": other_m0,
            "runs": [{"seed": r.seed, "method": r.method, "run_dir": str(r.run_dir), "labeled": r.labeled,
                      "finished": (r.method, r.seed) in finished,
                      "resumed_trainings": (r.report or {}).get("resumed_trainings") or []} for r in records]}
