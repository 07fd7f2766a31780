"""Per-generation reports of a run: ``report.md``, ``report.csv``, ``report.json``, ``report.png``, and
``report_logs.md`` (the log of every nnU-Net command).

The layout follows Tables 1 and 4 of the ATSO paper: accuracy of the updated pseudo-labels on
the reference set R and of the generation's model M_t on the test set E, and for ATSO the
half-models M_t^(k) on every reference subset R^(j). Because most teams have no ground truth for
R or E, two label-free monitors the paper lacks are reported in every run:

- *agreement*: DSC between the half-models' predictions on each subset (ATSO) — when the models
  trained on different halves agree, pseudo-labels have stopped carrying new information;
- *change*: DSC between this generation's pseudo-labels and the previous one's (1.0: a plateau).

A figure that cannot be computed (no ground truth, generation not run) is ``None`` / empty / ``–``.
"""
from __future__ import annotations

import csv
import io
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from atso_nnunet.io import atomic_path, write_json, write_text

logger = logging.getLogger(__name__)

LOGS_FILE = "report_logs.md"


@dataclass
class GenerationRecord:
    """Figures of one generation (DSC values in [0, 1]; ``None`` where unknown).

    Attributes:
        generation: 0 for M0 (labeled only), 1..T for the semi-supervised generations.
        reference_dsc: mean DSC of the updated pseudo-labels R_t against R's ground truth.
        test_dsc: DSC of M_t on E (mean over cases, or global, per the plan's metric).
        test_dsc_mean, test_dsc_global: DSC of M_t on E, mean over cases / all cases as one volume.
        half_models: Table 4 entries ``"M1@R1"`` ... mean DSC of half-model k on subset j.
        agreement: label-free, subset name -> mean DSC between the half-models' predictions.
        change: label-free, mean DSC between R_t and R_{t-1} (``None`` at G0).
        empty_pseudo_labels: number of pseudo-labels without foreground.
        pseudo_label_volume_ml: label-free, foreground volume of R_t on R in mL (:mod:`atso_nnunet.monitors.drift`).
        volume_vs_m0: that volume over M0's pseudo-labels' (R_0).
        volume_vs_previous: that volume over the previous generation's.
        vote_vs_views: median over cases of the pseudo-label's volume over the mean volume of the
            predictions it was fused from.
        volume_vs_labeled: the pseudo-labels' mean volume a case over the labeled cases' mean.
        unstable_cases: cases the stability filter left out of the trainings on R_t (None: no filter).
    """

    generation: int
    reference_dsc: Optional[float] = None
    test_dsc: Optional[float] = None
    test_dsc_mean: Optional[float] = None
    test_dsc_global: Optional[float] = None
    half_models: Dict[str, Optional[float]] = field(default_factory=dict)
    agreement: Dict[str, Optional[float]] = field(default_factory=dict)
    change: Optional[float] = None
    empty_pseudo_labels: Optional[int] = None
    pseudo_label_volume_ml: Optional[float] = None
    volume_vs_m0: Optional[float] = None
    volume_vs_previous: Optional[float] = None
    vote_vs_views: Optional[float] = None
    volume_vs_labeled: Optional[float] = None
    unstable_cases: Optional[List[str]] = None


@dataclass
class RunReport:
    """Everything the report files show.

    Attributes:
        method: ``atso``, ``stso``, ``self`` or ``supervised``.
        plan_name: the experiment plan's name.
        metric: ``mean`` or ``global`` (which test DSC the headline uses).
        generations: one record per finished generation, in order.
        final: figures of the final model on E (``test_dsc_mean``, ``test_dsc_global``), or ``None``.
        how_evaluated: sentence on how M_t is evaluated per generation.
        logs: step id -> log file, listed in ``report_logs.md`` (linked from ``report.md``).
        test_cases: size of the test set E (0: no test set; None: not known).
        final_label_round: the round of pseudo-labels the final model learned from (0: none; see
            :meth:`atso_nnunet.methods.base.Method.final_label_round`).
        cost: ``{"trainings": n, "iterations": i}`` of the whole schedule, M0 included.
        ship_generation: the plan's rule for the generation to ship (:mod:`atso_nnunet.monitors.ship_rule`).
        last_generation: the plan's T (None: the last reported generation).
        ship_models: generation -> the model that ships it (``Method.generation_model``; None: none).
        resumed_trainings: the finished trainings that were continued with ``nnUNetv2_train --c``
            after an interruption: ``{"step", "epochs", "exact"}`` each (``exact``: seeded per epoch,
            so the model equals an uninterrupted training's); None when no training has finished.
    """

    method: str
    plan_name: str
    metric: str
    generations: List[GenerationRecord] = field(default_factory=list)
    final: Optional[Dict[str, Optional[float]]] = None
    how_evaluated: str = ""
    logs: Dict[str, str] = field(default_factory=dict)
    test_cases: Optional[int] = None
    final_label_round: Optional[int] = None
    cost: Optional[Dict[str, int]] = None
    ship_generation: str = "last"
    last_generation: Optional[int] = None
    ship_models: Dict[int, Optional[str]] = field(default_factory=dict)
    resumed_trainings: Optional[List[Dict]] = None

    def to_json(self) -> dict:
        from atso_nnunet.monitors.without_labels import summary

        return {
            "method": self.method,
            "plan": self.plan_name,
            "metric": self.metric,
            "how_evaluated": self.how_evaluated,
            "generations": [asdict(g) for g in self.generations],
            "final": self.final or {"test_dsc_mean": None, "test_dsc_global": None},
            "logs": self.logs,
            "test_cases": self.test_cases,
            "final_label_round": self.final_label_round,
            "cost": self.cost,
            "without_labels": summary(self),
            "resumed_trainings": self.resumed_trainings,
        }


def _pct(v: Optional[float]) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def _half_model_keys(report: RunReport) -> List[str]:
    """Keys ``M<k>@R<j>`` in the paper's column order: by subset j, then model k."""
    keys = {k for g in report.generations for k in g.half_models}

    def order(key: str):
        model, subset = key.split("@")
        return subset, model

    return sorted(keys, key=order)


def _agreement_keys(report: RunReport) -> List[str]:
    keys: List[str] = []
    for g in report.generations:
        keys += [k for k in g.agreement if k not in keys]
    return keys


MONITORS_POINTER = ("Judge the run by the label-free monitors below instead: when the half-models agree on "
                    "the reference subsets and the pseudo-labels stop changing between generations, further "
                    "generations add little.")


def _no_test_score_words(report: RunReport) -> str:
    """What the report says when no model can be scored on E (no test set, or no ground truth)."""
    if report.test_cases == 0:
        return ("**No test set: this run cannot tell whether the model improved** over M0 (no labeled scans were "
                "held out to score it). " + MONITORS_POINTER + " To measure it, hold out some labeled scans: "
                "`atso_nnunet_make_plan --test-fraction 0.2` (or `--test-list`).")
    scores = [g.test_dsc for g in report.generations] + list((report.final or {}).values())
    if report.test_cases and report.generations and all(v is None for v in scores):
        return ("**No test score: this run cannot tell (yet) whether the model improved**, because the test set "
                "has no ground truth here. " + MONITORS_POINTER + " If the ground truth is added later (labelsTs), "
                "rerunning the same command scores it without retraining anything.")
    return ""


def _resumed_words(report: RunReport) -> str:
    """One line: which trainings were continued after an interruption, and whether exactly."""
    if report.resumed_trainings is None:
        return ""
    if not report.resumed_trainings:
        return "No training was resumed (every model trained without interruption)."
    parts = [f"{r['step']} (at epoch {', '.join(map(str, r['epochs']))}; "
             + ("exact: seeded per epoch)" if r["exact"] else "not exact: no training seed)")
             for r in report.resumed_trainings]
    return (f"Resumed trainings ({len(parts)}, continued with `nnUNetv2_train --c` after an interruption): "
            + "; ".join(parts) + ".")


def render_markdown(report: RunReport) -> str:
    """The Markdown report: Table 1 layout, Table 4 layout (ATSO), monitors, "Without labels", final model."""
    from atso_nnunet.monitors.without_labels import render_without_labels

    out = io.StringIO()
    out.write(f"# {report.plan_name}: {report.method}\n\n")
    out.write("DSC in %. '–' = not available (no ground truth, or not computed yet).\n\n")
    if report.how_evaluated:
        out.write(report.how_evaluated + "\n\n")
    if report.cost:
        rounds = ("" if report.final_label_round is None else
                  "no pseudo-labels" if report.final_label_round == 0 else
                  f"pseudo-labels of round {report.final_label_round}")
        out.write(f"Final model learned from {rounds}; the run trains {report.cost['trainings']} models, "
                  f"{report.cost['iterations']:,} iterations in all (M0 included).\n\n")
    resumed = _resumed_words(report)
    if resumed:
        out.write(resumed + "\n\n")
    unscored = _no_test_score_words(report)
    if unscored:
        out.write(unscored + "\n\n")
    out.write("## Accuracy per generation (Table 1 layout)\n\n")
    out.write(f"@E: DSC of M_t on the test set, mean over cases and global (all cases as one volume); "
              f"the plan's headline metric is **{report.metric}**, which @R and the Table 4 cells use too.\n\n")
    out.write(f"| Generation | @R (pseudo-labels, {report.metric}) | @E mean | @E global |\n|---|---|---|---|\n")
    for g in report.generations:
        out.write(f"| G{g.generation} | {_pct(g.reference_dsc)} | {_pct(_test_dsc(report, g, 'mean'))} | "
                  f"{_pct(_test_dsc(report, g, 'global'))} |\n")
    hk = _half_model_keys(report)
    if hk:
        out.write("\n## Half-models on the reference subsets (Table 4 layout)\n\n")
        out.write("| Generation | " + " | ".join(k.replace("@", " @ ") for k in hk)
                  + " | updated R_t | M_t @ E |\n")
        out.write("|---" * (len(hk) + 3) + "|\n")
        for g in report.generations:
            out.write(f"| G{g.generation} | " + " | ".join(_pct(g.half_models.get(k)) for k in hk)
                      + f" | {_pct(g.reference_dsc)} | {_pct(g.test_dsc)} |\n")
    ak = _agreement_keys(report)
    out.write("\n## Label-free monitors\n\n")
    out.write("Agreement: DSC between half-models on each subset. Change: DSC between this and the "
              "previous generation's pseudo-labels (near 100 = plateau).\n\n")
    out.write("| Generation | " + "".join(f"agreement {k} | " for k in ak) + "change vs previous | empty pseudo-labels |\n")
    out.write("|---" * (len(ak) + 3) + "|\n")
    for g in report.generations:
        empty = "–" if g.empty_pseudo_labels is None else str(g.empty_pseudo_labels)
        out.write(f"| G{g.generation} | " + "".join(f"{_pct(g.agreement.get(k))} | " for k in ak)
                  + f"{_pct(g.change)} | {empty} |\n")
    out.write(render_without_labels(report))
    if report.final:
        out.write("\n## Final model (trained on S + all of R)\n\n")
        out.write(f"- test DSC (mean over cases): {_pct(report.final.get('test_dsc_mean'))}\n")
        out.write(f"- test DSC (global): {_pct(report.final.get('test_dsc_global'))}\n")
    if report.logs:
        out.write(f"\nLogs of the {len(report.logs)} nnU-Net commands: [{LOGS_FILE}]({LOGS_FILE}).\n")
    return out.getvalue()


def _test_dsc(report: RunReport, g: GenerationRecord, metric: str) -> Optional[float]:
    """Test DSC of a generation by ``metric``; the headline value stands in where the other is unset."""
    value = g.test_dsc_mean if metric == "mean" else g.test_dsc_global
    return g.test_dsc if value is None and metric == report.metric else value


def render_logs(report: RunReport) -> str:
    """``report_logs.md``: one line per nnU-Net command (step id -> its log, relative to the run folder)."""
    out = io.StringIO()
    out.write(f"# {report.plan_name}: {report.method}, logs of the nnU-Net commands\n\n")
    for step, path in report.logs.items():
        out.write(f"- `{step}`: [{path}]({path})\n")
    return out.getvalue()


def render_csv(report: RunReport) -> str:
    """One row per generation; columns of Table 1 and Table 4 plus the monitors."""
    hk, ak = _half_model_keys(report), _agreement_keys(report)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["generation", "reference_dsc", "test_dsc", "test_dsc_mean", "test_dsc_global", *hk,
                *[f"agreement_{k}" for k in ak], "change", "empty_pseudo_labels", "pseudo_label_volume_ml",
                "volume_vs_m0", "volume_vs_previous", "vote_vs_views"])
    fmt = lambda v: "" if v is None else f"{v:.6f}" if isinstance(v, float) else str(v)  # noqa: E731
    for g in report.generations:
        w.writerow([g.generation, fmt(g.reference_dsc), fmt(g.test_dsc), fmt(g.test_dsc_mean),
                    fmt(g.test_dsc_global), *[fmt(g.half_models.get(k)) for k in hk],
                    *[fmt(g.agreement.get(k)) for k in ak], fmt(g.change), fmt(g.empty_pseudo_labels),
                    fmt(g.pseudo_label_volume_ml), fmt(g.volume_vs_m0), fmt(g.volume_vs_previous),
                    fmt(g.vote_vs_views)])
    if report.final:
        w.writerow(["final", "", fmt(report.final.get(f"test_dsc_{report.metric}")),
                    fmt(report.final.get("test_dsc_mean")), fmt(report.final.get("test_dsc_global"))])
    return buf.getvalue()


def plot(report: RunReport, path: Path) -> Optional[Path]:
    """PNG of DSC per generation (R, E, half-model agreement); ``None`` if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = [g.generation for g in report.generations]
    if not gens:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    series = [("@R (pseudo-labels)", [g.reference_dsc for g in report.generations], "o-"),
              (f"@E ({report.metric})", [g.test_dsc for g in report.generations], "s-"),
              ("change vs previous (label-free)", [g.change for g in report.generations], "x--")]
    for k in _agreement_keys(report):
        series.append((f"agreement {k} (label-free)", [g.agreement.get(k) for g in report.generations], ".:"))
    drawn = 0
    for label, values, style in series:
        pts = [(x, 100 * v) for x, v in zip(gens, values) if v is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
            drawn += 1
    if report.final and report.final.get(f"test_dsc_{report.metric}") is not None:
        ax.axhline(100 * report.final[f"test_dsc_{report.metric}"], color="k", lw=0.8, ls="-.",
                   label="final model @E")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("generation")
    ax.set_ylabel("DSC (%)")
    ax.set_xticks(gens)
    ax.set_title(f"{report.plan_name}: {report.method}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def write_report(report: RunReport, run_dir: Path, with_plot: bool = True) -> Dict[str, Path]:
    """Write the report files into ``run_dir`` (atomically) and return their paths: ``report.md``,
    ``.csv``, ``.json``, ``.png`` (if there is anything to plot) and ``report_logs.md`` (if any logs).

    ``with_plot=False`` leaves ``report.png`` as it is (drawing it costs about a second).
    """
    run_dir = Path(run_dir)
    files = {
        "md": write_text(render_markdown(report), run_dir / "report.md"),
        "csv": write_text(render_csv(report), run_dir / "report.csv"),
        "json": write_json(report.to_json(), run_dir / "report.json"),
    }
    if report.logs:
        files["logs"] = write_text(render_logs(report), run_dir / LOGS_FILE)
    png = plot(report, run_dir / "report.png") if with_plot else None
    if png is not None:
        files["png"] = png
    logger.info("report written: %s", ", ".join(str(p) for p in files.values()))
    return files


# ---------------------------------------------------------------------------------------------
# assembly from the schedule's declared outputs


def _score_value(data: Optional[dict], key: str) -> Optional[float]:
    if not data or not data.get("available", True):
        return None
    return data.get(key)


def assemble(steps, read: Callable[[object], Optional[dict]], is_done: Callable[[str], bool], *, method: str,
             plan_name: str, metric: str, how_evaluated: str = "",
             logs: Optional[Dict[str, str]] = None, ship_generation: str = "last",
             last_generation: Optional[int] = None) -> RunReport:
    """Build the report from the schedule: every finished step with ``report_cells`` fills them.

    Args:
        steps: the run's schedule (:mod:`atso_nnunet.schedule`).
        read: reads a step's output (a ``Score`` or ``Monitor`` JSON) as a dict, None if absent.
        is_done: whether a step id has finished.
        method, plan_name, how_evaluated: words for the report.
        metric: ``mean`` or ``global``: which DSC fills the @R, @E and Table 4 cells.
        logs: step id -> log file (relative to the run folder).
        ship_generation, last_generation: the plan's rule for the generation to ship, and its T.
    """
    rep = RunReport(method=method, plan_name=plan_name, metric=metric, how_evaluated=how_evaluated,
                    logs=dict(logs or {}), ship_generation=ship_generation, last_generation=last_generation)
    rows: Dict[int, GenerationRecord] = {}
    key = f"{metric}_dsc"
    for step in steps:
        if not step.report_cells or not is_done(step.id):
            continue
        data = read(step.output)
        for cell in step.report_cells:
            if cell.column == "final":
                rep.final = {"test_dsc_mean": _score_value(data, "mean_dsc"),
                             "test_dsc_global": _score_value(data, "global_dsc")}
                continue
            g = rows.setdefault(cell.generation, GenerationRecord(generation=cell.generation))
            if cell.column == "reference":
                g.reference_dsc = _score_value(data, key)
            elif cell.column == "test":
                g.test_dsc, g.test_dsc_mean, g.test_dsc_global = (
                    _score_value(data, key), _score_value(data, "mean_dsc"), _score_value(data, "global_dsc"))
            elif cell.column == "half_model":
                g.half_models[cell.key] = _score_value(data, key)
            elif cell.column == "agreement":
                g.agreement[cell.key] = (data or {}).get("value")
            elif cell.column == "change":
                g.change = (data or {}).get("value")
            elif cell.column == "empty":
                g.empty_pseudo_labels = (data or {}).get("value")
            elif cell.column == "volume":
                d = data or {}
                (g.pseudo_label_volume_ml, g.volume_vs_m0, g.volume_vs_previous, g.vote_vs_views,
                 g.volume_vs_labeled) = (d.get(k) for k in ("total_ml", "vs_first", "vs_previous", "vote_vs_views",
                                                            "vs_labeled"))
                if cell.generation == 0 and g.pseudo_label_volume_ml is not None:
                    g.volume_vs_m0 = 1.0
            elif cell.column == "stability":
                g.unstable_cases = list((data or {}).get("dropped", []))
    rep.generations = [rows[t] for t in sorted(rows)]
    return rep
