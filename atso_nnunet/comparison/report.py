"""The comparison's tables and figure: ``comparison.{md,csv,json,png}``.

Read from the run folders' ``report.json`` files only (:mod:`atso_nnunet.comparison.run`), so every
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
from pathlib import Path
from typing import Dict, Optional, Sequence

from atso_nnunet.io import atomic_path, write_json, write_text
from atso_nnunet.methods import baseline_method, get_method, method_word, methods_in_role
from atso_nnunet.comparison.summary import summarise

logger = logging.getLogger(__name__)

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
    unfinished = [f"seed {r['seed']} {method_word(r['method'])}" for r in summary.get("runs", [])
                  if not r["finished"]]
    if unfinished:
        out.write(f"**Not finished yet** (no final score, '–'; rerun the command to continue): {', '.join(unfinished)}.\n\n")
    resumed = [f"seed {r['seed']} {method_word(r['method'])} " + ", ".join(
        t["step"] + ("" if t["exact"] else " (not exact: no training seed)") for t in r["resumed_trainings"])
        for r in summary.get("runs", []) if r.get("resumed_trainings")]
    if resumed:
        out.write("Resumed trainings (continued with `nnUNetv2_train --c` after an interruption; seeded per epoch, "
                  f"they equal uninterrupted ones): {'; '.join(resumed)}.\n\n")
    out.write("## Final models on E\n\n| method | test DSC | n | per seed |\n|---|---|---|---|\n")
    for m in summary["methods"]:
        st = summary["final"]["stats"][m]
        per = ", ".join(_pct(summary["final"]["per_seed"][m].get(s)) for s in seeds)
        out.write(f"| {method_word(m)} | {_pct(st['mean'], st['sd'])} | {st['n']} | {per} |\n")
    if any(summary.get("cost", {}).values()):
        out.write("\n## What each final model learned from, and what its run costs\n\n"
                  "Label round: round 1 is M0's pseudo-labels, round t those of a model trained on round t − 1 "
                  "(0: none). Trainings and iterations of one run of the method, M0 included.\n\n"
                  "| method | label round of the final model | trainings | iterations |\n|---|---:|---:|---:|\n")
        for m in summary["methods"]:
            c = summary["cost"].get(m)
            if c:
                r = c.get("final_label_round")
                out.write(f"| {method_word(m)} | {'–' if r is None else r} | {c['trainings']} | "
                          f"{c['iterations']:,} |\n")
    if summary.get("gap_share"):
        out.write("\n## Share of the labeled-only -> oracle gap closed (per seed, then mean ± sd)\n\n"
                  "(final − labeled-only) / (oracle − labeled-only) of the same seed; the paper reports 73 % for "
                  "ATSO at 10 % labels.\n\n| method | mean ± sd | per seed |\n|---|---|---|\n")
        for m, g in summary["gap_share"].items():
            out.write(f"| {method_word(m)} | {_pct(g['mean'], g['sd'])} % | "
                      f"{', '.join(_pct(x) for x in g['per_seed'])} |\n")
    out.write("\n## Paired differences of the final models (same seed = same labeled draw and M0)\n\n"
              "| difference | mean ± sd | seeds with a gain | per seed |\n|---|---|---|---|\n")
    for k, d in summary["paired_differences"].items():
        a, b = k.split("-")
        out.write(f"| {method_word(a)} − {method_word(b)} | {_pct(d['mean'], d['sd'])} | {d['positive']}/{d['n']} | "
                  f"{', '.join(_pct(x) for x in d['per_seed'])} |\n")
    for r in summary.get("different_m0", []):
        out.write(f"\nSeed {r['seed']} {method_word(r['method'])} started from another training of M0 "
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
        out.write(f"| {method_word(m)} | {n} | " + " | ".join(
            _pct(row[t]["test"]["mean"], row[t]["test"]["sd"]) if t in row else "" for t in gens) + " |\n")
    out.write("\n## Pseudo-labels on R (truth) next to the label-free monitors\n\n"
              "Volume: the pseudo-labels' foreground voxels on R over the ground truth's ('vs truth', from the same "
              "scoring as @R DSC); their volume over M0's pseudo-labels' (label-free; 'vs M0', the drift monitor); "
              "and the median over R of the fused label's volume over the mean of the views it was fused from "
              "('vote / views'; tri-view only). '–': not recorded (runs made before the volume monitor).\n\n"
              "| method | generation | @R DSC | change vs previous | half-model agreement | empty | volume vs truth | "
              "volume vs M0 | vote / views |\n|---|---|---|---|---|---|---|---|---|\n")
    for m in summary["methods"]:
        for t, row in summary["per_generation"][m].items():
            if row["reference"]["n"] == 0:
                continue
            empty = row["empty"]["mean"]
            out.write(f"| {method_word(m)} | G{t} | {_pct(row['reference']['mean'], row['reference']['sd'])} | "
                      f"{_pct(row['change']['mean'])} | {_pct(row['agreement']['mean'])} | "
                      f"{'–' if empty is None else f'{empty:.1f}'} | {_ratio(row, 'volume_vs_truth')} | "
                      f"{_ratio(row, 'volume_vs_m0')} | "
                      f"{_ratio(row, 'vote_vs_views')} |\n")
    c = summary["monitor_correlation"]
    out.write("\nCorrelation with the pseudo-label DSC on R across generations >= 1, methods and seeds "
              "(Pearson r; '–' with fewer than 3 points or no spread): "
              + ", ".join(f"{k} {('–' if v is None else f'{v:+.2f}')}" for k, v in c.items()) + ".\n")
    out.write(_render_without_labels(summary.get("without_labels")))
    return out.getvalue()


def _ratio(row: dict, key: str) -> str:
    """A volume ratio's mean over seeds (± sd), or '–' where the run did not record it."""
    v = row.get(key)
    if not v or v["mean"] is None:
        return "–"
    return f"{v['mean']:.2f}" + (f" ± {v['sd']:.2f}" if v.get("sd") is not None else "")


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
    drifted = [f"seed {d['seed']} {method_word(d['method'])} (from G{d['first_generation']})"
               for d in w["drift"] if d["drifted"]]
    if w["drift"]:
        out.write("\nDrift warnings (pseudo-labels lost 20 % of M0's volume on R): "
                  + (", ".join(drifted) if drifted else "none") + ".\n")
    return out.getvalue()


def render_csv(summary: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "seed", "generation", "test_dsc", "reference_dsc", "change", "agreement", "empty",
                "volume_vs_truth", "volume_vs_m0", "vote_vs_views", "final_test_dsc"])
    for m in summary["methods"]:
        for i, s in enumerate(summary["seeds"]):
            for t, row in summary["per_generation"][m].items():
                w.writerow([m, s, t, *[("" if row[k]["per_seed"][i] is None else row[k]["per_seed"][i])
                                       for k in ("test", "reference", "change", "agreement", "empty",
                                                 "volume_vs_truth", "volume_vs_m0", "vote_vs_views")],
                            summary["final"]["per_seed"][m].get(s, "")])
    return buf.getvalue()


def plot(summary: dict, path: Path, plan_name: str) -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2), dpi=100)
    ax = axes[0]
    curves = [m for m in summary["methods"] if m not in (baseline_method(), *methods_in_role("bound"))]
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
        line = ax.errorbar(ts, mean, yerr=sd, marker="o", capsize=3, label=f"{method_word(m)} (n = {final.get('n', 0)})")
        if final.get("mean") is not None:
            ax.errorbar([x_final], [100 * final["mean"]], yerr=[100 * (final["sd"] or 0)], marker="*",
                        markersize=10, capsize=3, color=line[0].get_color(), ls="none")
    ax.set_xticks(list(range(last + 1)) + [x_final])
    ax.set_xticklabels([f"G{t}" for t in range(last + 1)] + ["final"])
    for key, m in (("labeled_only", baseline_method()), ("oracle", (methods_in_role("bound") or ("",))[0])):
        if summary.get(key) is not None:
            style, label = get_method(m).line_style, get_method(m).line_label
            n = summary["final"]["stats"].get(m, {}).get("n", 0)
            ax.axhline(100 * summary[key], color="k", ls=style, lw=1, label=f"{label}, n = {n}")
    _label_axes(ax, "generation (M_t) and final model (*)", "test DSC (%)", "test DSC on E, mean ± sd over seeds")
    ax = axes[1]
    names = [k for k, d in summary["paired_differences"].items() if d["n"]]
    for i, k in enumerate(names):
        d = [100 * x for x in summary["paired_differences"][k]["per_seed"] if x is not None]
        ax.scatter([i] * len(d), d, color="C0")
        ax.errorbar([i + 0.15], [sum(d) / len(d)], yerr=[100 * (summary["paired_differences"][k]["sd"] or 0)],
                    fmt="s", color="C3", capsize=4)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([" − ".join(method_word(x) for x in k.split("-")) for k in names], rotation=20, fontsize=7)
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
    _label_axes(ax, "label-free monitor (%)", "pseudo-label DSC on R (%)", "do the monitors track the truth?")
    _plot_pseudo_label_volumes(axes[3], summary, curves)
    fig.suptitle(plan_name, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def _label_axes(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _plot_pseudo_label_volumes(ax, summary: dict, methods: Sequence[str]) -> None:
    """Each method's pseudo-labels on R: foreground volume over the truth's per generation (mean ± sd over
    seeds); below 1 they under-segment, a falling curve is the drift the volume monitor warns of."""
    from matplotlib.ticker import MaxNLocator

    for m in methods:
        row = summary["per_generation"][m]
        ts = [t for t in sorted(row) if (row[t].get("volume_vs_truth") or {}).get("mean") is not None]
        if ts:
            ax.errorbar(ts, [row[t]["volume_vs_truth"]["mean"] for t in ts],
                        yerr=[row[t]["volume_vs_truth"]["sd"] or 0 for t in ts], marker="o", capsize=3,
                        label=method_word(m))
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _label_axes(ax, "generation of the pseudo-labels (R_t)", "pseudo-label volume / true volume on R",
                "do the pseudo-labels keep the organ's size?")


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
