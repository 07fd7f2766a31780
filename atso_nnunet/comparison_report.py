"""The comparison's tables and figure: ``comparison.{md,csv,json,png}``.

Read from the run folders' ``report.json`` files only (:mod:`atso_nnunet.compare`), so every
number can be re-derived from the runs. DSC values are fractions in JSON and CSV, % in Markdown.

- **Test DSC per generation per method**, mean and standard deviation over the seeds whose run
  of that method has finished (the same seeds at every generation), with the labeled-only (M0)
  and oracle means as reference lines.
- **Final models**, and **paired per-seed differences** (ATSO - STSO, ATSO - self, STSO - self,
  and each method - labeled-only, the oracle's included): a difference is taken within a seed, where the
  labeled draw and M0 are the same, so draw-to-draw spread cancels; a run whose M0 is another
  training (its generation-0 score differs: an M0 retrained after its folder was lost) is left out
  of the pairs and named.
- **Monitors vs truth**: per generation the pseudo-label DSC on R next to the label-free monitors
  (change of pseudo-labels, agreement of ATSO's half-models, empty pseudo-labels), and the
  correlation of each monitor with the pseudo-label DSC across generations and seeds.
"""
from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from atso_nnunet.compare import LABELED_ONLY
from atso_nnunet.io import atomic_path, write_json, write_text

logger = logging.getLogger(__name__)

# The three ATSO differences, the paper's other step (STSO over self-learning), and what
# each method buys over labeled-only, with the oracle's gap as the scale those gains are read on.
PAIRS: Tuple[Tuple[str, str], ...] = (("atso", "stso"), ("atso", "self"), ("stso", "self"), ("atso", "supervised"),
                                      ("stso", "supervised"), ("self", "supervised"), ("oracle", "supervised"))
NAMES = {"supervised": "labeled-only", "self": "self-learning", "stso": "STSO", "atso": "ATSO", "oracle": "oracle"}


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
#: ("Without labels"); volume: the pseudo-labels' volume on R over M0's (atso_nnunet.drift)
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
    return [{"seed": s, "method": m, "m0_test_dsc": v, "labeled_only_m0_test_dsc": g0.get((LABELED_ONLY, s))}
            for (m, s), v in sorted(g0.items(), key=lambda kv: (kv[0][1], kv[0][0]))
            if m != LABELED_ONLY and not same_m0(v, g0.get((LABELED_ONLY, s)))]


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
                   "empty": vals("empty_pseudo_labels")}
            agree = []
            for s in seeds:
                g = next((g for g in (by.get((m, s)) or {}).get("generations", []) if g["generation"] == t), None)
                a = [v for v in ((g or {}).get("agreement") or {}).values() if v is not None]
                agree.append(sum(a) / len(a) if a else None)
            row["agreement"] = agree
            per_gen[m][t] = {k: {"per_seed": v, **dict(zip(("mean", "sd", "n"), _mean_sd([v[i] for i in done])))}
                             for k, v in row.items()}
    finals = {m: {s: final_score(by.get((m, s))) if (m, s) in finished else None for s in seeds} for m in methods}
    final_stats = {m: dict(zip(("mean", "sd", "n"), _mean_sd(list(v.values())))) for m, v in finals.items()}
    # generation 0's test score per run, from the curves above (the same float for every run on one M0)
    g0 = {(m, s): per_gen[m][0]["test"]["per_seed"][i] for m in methods if 0 in per_gen[m] for i, s in enumerate(seeds)}
    other_m0 = different_m0(g0)
    pairs = {}
    for a, b in PAIRS:
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
    labeled_only = final_stats.get("supervised", {}).get("mean")
    oracle = final_stats.get("oracle", {}).get("mean")
    # each method's share of its seed's labeled-only -> oracle gap (the paper: ATSO 73 % at 10 %)
    gap_share = {}
    if "supervised" in finals and "oracle" in finals:
        for m in methods:
            if m in ("supervised", "oracle"):
                continue
            per = []
            for s in seeds:
                lo, orc, v = finals["supervised"][s], finals["oracle"][s], finals[m][s]
                ok = None not in (lo, orc, v) and orc != lo and same_m0(g0.get((m, s)), g0.get(("supervised", s)))
                per.append((v - lo) / (orc - lo) if ok else None)
            gap_share[m] = {"per_seed": per, **dict(zip(("mean", "sd", "n"), _mean_sd(per)))}
    return {"methods": methods, "seeds": seeds, "per_generation": per_gen, "final": {"per_seed": finals,
            "stats": final_stats}, "paired_differences": pairs, "monitor_correlation": correlation,
            "monitor_points": points, "without_labels": without_labels(by), "cost": cost, "gap_share": gap_share,
            "labeled_only": labeled_only, "oracle": oracle, "different_m0": other_m0,
            "runs": [{"seed": r.seed, "method": r.method, "run_dir": str(r.run_dir), "labeled": r.labeled,
                      "finished": (r.method, r.seed) in finished,
                      "resumed_trainings": (r.report or {}).get("resumed_trainings") or []} for r in records]}


def _pct(v: Optional[float], sd: Optional[float] = None) -> str:
    if v is None:
        return "–"
    return f"{100 * v:.1f}" + (f" ± {100 * sd:.1f}" if sd is not None else "")


def render_markdown(summary: dict, plan_name: str, command: str = "") -> str:
    out = io.StringIO()
    seeds = summary["seeds"]
    out.write(f"# Comparison: {plan_name}\n\n")
    draws = {tuple(r["labeled"]) for r in summary.get("runs", []) if r.get("labeled")}
    what = ("one seed: its labeled draw, reference split and training seed" if len(seeds) < 2
            else "each seed is its own labeled draw, reference split and training seed" if len(draws) != 1
            else "the labeled set is the same for every seed (the plan allows no other draw); each seed is its own "
                 "reference split and training seed")
    out.write(f"Test DSC in %, mean ± sample standard deviation over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); "
              f"{what}.\n\n")
    if command:
        out.write(f"Reproduce: `{command}`\n\n")
    unfinished = [f"seed {r['seed']} {NAMES.get(r['method'], r['method'])}" for r in summary.get("runs", [])
                  if not r["finished"]]
    if unfinished:
        out.write(f"**Not finished yet** (no final score, '–'; rerun the command to continue): {', '.join(unfinished)}.\n\n")
    resumed = [f"seed {r['seed']} {NAMES.get(r['method'], r['method'])} " + ", ".join(
        t["step"] + ("" if t["exact"] else " (not exact: no training seed)") for t in r["resumed_trainings"])
        for r in summary.get("runs", []) if r.get("resumed_trainings")]
    if resumed:
        out.write("Resumed trainings (continued with `nnUNetv2_train --c` after an interruption; seeded per epoch, "
                  f"they equal uninterrupted ones): {'; '.join(resumed)}.\n\n")
    out.write("## Final models on E\n\n| method | test DSC | n | per seed |\n|---|---|---|---|\n")
    for m in summary["methods"]:
        st = summary["final"]["stats"][m]
        per = ", ".join(_pct(summary["final"]["per_seed"][m].get(s)) for s in seeds)
        out.write(f"| {NAMES.get(m, m)} | {_pct(st['mean'], st['sd'])} | {st['n']} | {per} |\n")
    if any(summary.get("cost", {}).values()):
        out.write("\n## What each final model learned from, and what its run costs\n\n"
                  "Label round: round 1 is M0's pseudo-labels, round t those of a model trained on round t − 1 "
                  "(0: none). Trainings and iterations of one run of the method, M0 included.\n\n"
                  "| method | label round of the final model | trainings | iterations |\n|---|---:|---:|---:|\n")
        for m in summary["methods"]:
            c = summary["cost"].get(m)
            if c:
                r = c.get("final_label_round")
                out.write(f"| {NAMES.get(m, m)} | {'–' if r is None else r} | {c['trainings']} | "
                          f"{c['iterations']:,} |\n")
    if summary.get("gap_share"):
        out.write("\n## Share of the labeled-only -> oracle gap closed (per seed, then mean ± sd)\n\n"
                  "(final − labeled-only) / (oracle − labeled-only) of the same seed; the paper reports 73 % for "
                  "ATSO at 10 % labels.\n\n| method | mean ± sd | per seed |\n|---|---|---|\n")
        for m, g in summary["gap_share"].items():
            out.write(f"| {NAMES.get(m, m)} | {_pct(g['mean'], g['sd'])} % | "
                      f"{', '.join(_pct(x) for x in g['per_seed'])} |\n")
    out.write("\n## Paired differences of the final models (same seed = same labeled draw and M0)\n\n"
              "| difference | mean ± sd | seeds with a gain | per seed |\n|---|---|---|---|\n")
    for k, d in summary["paired_differences"].items():
        a, b = k.split("-")
        out.write(f"| {NAMES.get(a, a)} − {NAMES.get(b, b)} | {_pct(d['mean'], d['sd'])} | {d['positive']}/{d['n']} | "
                  f"{', '.join(_pct(x) for x in d['per_seed'])} |\n")
    for r in summary.get("different_m0", []):
        out.write(f"\nSeed {r['seed']} {NAMES.get(r['method'], r['method'])} started from another training of M0 "
                  f"(its G0 test DSC {_pct(r['m0_test_dsc'])}, the labeled-only run's {_pct(r['labeled_only_m0_test_dsc'])}): "
                  "it is left out of the paired differences ('–'), which hold only runs on the same M0.\n")
    out.write("\n## Test DSC per generation\n\n")
    gens = sorted({t for m in summary["methods"] for t in summary["per_generation"][m]})
    out.write("Mean ± sd over the seeds whose run of that method has finished (n), the same seeds at every "
              "generation; a run still training is left out here and kept, per seed, in comparison.csv.\n\n")
    out.write("| method | n | " + " | ".join(f"G{t}" for t in gens) + " |\n" + "|---" * (len(gens) + 2) + "|\n")
    for m in summary["methods"]:
        row = summary["per_generation"][m]
        n = summary["final"]["stats"][m]["n"]
        out.write(f"| {NAMES.get(m, m)} | {n} | " + " | ".join(
            _pct(row[t]["test"]["mean"], row[t]["test"]["sd"]) if t in row else "" for t in gens) + " |\n")
    out.write("\n## Pseudo-labels on R (truth) next to the label-free monitors\n\n"
              "| method | generation | @R DSC | change vs previous | half-model agreement | empty |\n"
              "|---|---|---|---|---|---|\n")
    for m in summary["methods"]:
        for t, row in summary["per_generation"][m].items():
            if row["reference"]["n"] == 0:
                continue
            empty = row["empty"]["mean"]
            out.write(f"| {NAMES.get(m, m)} | G{t} | {_pct(row['reference']['mean'], row['reference']['sd'])} | "
                      f"{_pct(row['change']['mean'])} | {_pct(row['agreement']['mean'])} | "
                      f"{'–' if empty is None else f'{empty:.1f}'} |\n")
    c = summary["monitor_correlation"]
    out.write("\nCorrelation with the pseudo-label DSC on R across generations >= 1, methods and seeds "
              "(Pearson r; '–' with fewer than 3 points or no spread): "
              + ", ".join(f"{k} {('–' if v is None else f'{v:+.2f}')}" for k, v in c.items()) + ".\n")
    out.write(_render_without_labels(summary.get("without_labels")))
    return out.getvalue()


def _render_without_labels(w: Optional[dict]) -> str:
    if not w:
        return ""
    r = lambda v: "–" if v is None else f"{v:+.2f}"  # noqa: E731
    out = io.StringIO()
    out.write("\n## Without labels: the monitors against the truth\n\n"
              "Correlation of each label-free monitor with the pseudo-labels' true DSC on R, across generations "
              ">= 1 x seeds x methods ('–': fewer than 3 points, no spread, or not recorded: runs made before the "
              "volume monitor).\n\n| monitor | Pearson r | Spearman rank | points |\n|---|---:|---:|---:|\n")
    for k in w["pearson"]:
        out.write(f"| {k} | {r(w['pearson'][k])} | {r(w['spearman'][k])} | {w['n'][k]} |\n")
    drifted = [f"seed {d['seed']} {NAMES.get(d['method'], d['method'])} (from G{d['first_generation']})"
               for d in w["drift"] if d["drifted"]]
    if w["drift"]:
        out.write("\nDrift warnings (pseudo-labels lost 20 % of M0's volume on R): "
                  + (", ".join(drifted) if drifted else "none") + ".\n")
    return out.getvalue()


def render_csv(summary: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "seed", "generation", "test_dsc", "reference_dsc", "change", "agreement", "empty",
                "final_test_dsc"])
    for m in summary["methods"]:
        for i, s in enumerate(summary["seeds"]):
            for t, row in summary["per_generation"][m].items():
                w.writerow([m, s, t, *[("" if row[k]["per_seed"][i] is None else row[k]["per_seed"][i])
                                       for k in ("test", "reference", "change", "agreement", "empty")],
                            summary["final"]["per_seed"][m].get(s, "")])
    return buf.getvalue()


def plot(summary: dict, path: Path, plan_name: str) -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), dpi=100)
    ax = axes[0]
    curves = [m for m in summary["methods"] if m not in ("supervised", "oracle")]
    last = max((t for m in curves for t in summary["per_generation"][m]), default=0)
    x_final = last + 1  # the final model (S + all of R) is drawn apart from the generations' M_t
    for m in curves:
        row = summary["per_generation"][m]
        ts = [t for t in sorted(row) if row[t]["test"]["mean"] is not None]
        final = summary["final"]["stats"].get(m, {})
        if not ts and final.get("mean") is None:
            continue
        mean = [100 * row[t]["test"]["mean"] for t in ts]
        sd = [100 * (row[t]["test"]["sd"] or 0) for t in ts]
        line = ax.errorbar(ts, mean, yerr=sd, marker="o", capsize=3, label=f"{NAMES.get(m, m)} (n = {final.get('n', 0)})")
        if final.get("mean") is not None:
            ax.errorbar([x_final], [100 * final["mean"]], yerr=[100 * (final["sd"] or 0)], marker="*",
                        markersize=10, capsize=3, color=line[0].get_color(), ls="none")
    ax.set_xticks(list(range(last + 1)) + [x_final])
    ax.set_xticklabels([f"G{t}" for t in range(last + 1)] + ["final"])
    for key, m, style, label in (("labeled_only", "supervised", "--", "labeled-only (M0)"),
                                 ("oracle", "oracle", "-.", "oracle (S + R true labels)")):
        if summary.get(key) is not None:
            n = summary["final"]["stats"].get(m, {}).get("n", 0)
            ax.axhline(100 * summary[key], color="k", ls=style, lw=1, label=f"{label}, n = {n}")
    ax.set_xlabel("generation (M_t) and final model (*)")
    ax.set_ylabel("test DSC (%)")
    ax.set_title("test DSC on E, mean ± sd over seeds")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[1]
    names = [k for k, d in summary["paired_differences"].items() if d["n"]]
    for i, k in enumerate(names):
        d = [100 * x for x in summary["paired_differences"][k]["per_seed"] if x is not None]
        ax.scatter([i] * len(d), d, color="C0")
        ax.errorbar([i + 0.15], [sum(d) / len(d)], yerr=[100 * (summary["paired_differences"][k]["sd"] or 0)],
                    fmt="s", color="C3", capsize=4)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([" − ".join(NAMES.get(x, x) for x in k.split("-")) for k in names], rotation=20, fontsize=7)
    ax.set_ylabel("final-model test DSC difference (points)")
    ax.set_title("paired per-seed differences")
    ax.grid(alpha=0.3)
    ax = axes[2]
    pts = summary["monitor_points"]
    for k, marker in (("change", "o"), ("agreement", "^")):
        xy = [(100 * x, 100 * y) for x, y in zip(pts[k], pts["reference"]) if x is not None and y is not None]
        if xy:
            r = summary["monitor_correlation"][k]
            ax.scatter([p[0] for p in xy], [p[1] for p in xy], marker=marker,
                       label=f"{k} (r = {'–' if r is None else f'{r:+.2f}'})")
    ax.set_xlabel("label-free monitor (%)")
    ax.set_ylabel("pseudo-label DSC on R (%)")
    ax.set_title("do the monitors track the truth?")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.suptitle(plan_name, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def write_comparison(records, out_dir: Path, plan_name: str, command: str = "") -> Dict[str, Path]:
    """Write ``comparison.{md,csv,json,png}`` into ``out_dir`` from the runs' reports."""
    out_dir = Path(out_dir)
    summary = summarise(records)
    for run in summary["runs"]:  # relative to the comparison: the tables stay true when it moves
        run["run_dir"] = _relative(Path(run["run_dir"]), out_dir)
    files = {"md": write_text(render_markdown(summary, plan_name, command), out_dir / "comparison.md"),
             "csv": write_text(render_csv(summary), out_dir / "comparison.csv"),
             "json": write_json({"plan": plan_name, "command": command, **summary}, out_dir / "comparison.json"),
             "png": plot(summary, out_dir / "comparison.png", plan_name)}
    logger.info("comparison written: %s", out_dir / "comparison.md")
    return files
