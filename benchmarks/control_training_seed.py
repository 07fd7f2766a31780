"""Issue 25, item 7 for ATSO: is the final model's fall below M_T-1 one training's spread? Scored on V, never on E.

    .venv/bin/python benchmarks/control_training_seed.py --run /work/bench/r1/seed0/atso \
        --work /work/bench/r1_control_atso --cpu-jobs 2

Diagnosis under test (docs/lab/benchmarks.md, "Item 7 on seed 0, ATSO"): ATSO's final model on seed 0
scores 4.6 points below its G2 model on E although their labels (R_2 and R_1) have the same volume and
quality; the hypothesis is that one training's spread (its trajectory, not its labels) moved it.

Arms, each a run of the real driver that scores the validation set V as its test set:

- ``stock``: the comparison's run as it was (M0 and every trained model copied in and adopted; only V
  and R are predicted);
- ``final_seed<N>``: the same, but the final model is retrained with training seed N
  (``training.roles.final.seed``) on the same labels R_T-1.

Each arm gets its own run folder under ``--work``; all share one nnU-Net folder and the experiment
dataset id ``--dataset-id`` (default 951), never the comparison's. Rerunning continues. The table it
prints: DSC on V of every generation's model and of the final model, per arm.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from control_volume_prior import control_arguments, per_case, run_control, save_figure

from atso_nnunet.plan.sections import TrainingSection

logger = logging.getLogger("control_training_seed")


def control_plan(run_plan: dict, dataset_id: int, final_seed: int | None) -> dict:
    """The comparison run's plan with V as its test set and, for a retrained final, its training seed."""
    plan = json.loads(json.dumps(run_plan))
    if not plan.get("validation"):
        raise SystemExit(f"{plan['name']}: the plan has no validation set V to score the control on")
    arm = "stock" if final_seed is None else f"final trained with seed {final_seed}"
    plan.update(name=f"{plan['name']} [item 7 control: {arm}, scored on V]", test=list(plan["validation"]),
                validation=[], dataset_id=dataset_id, dataset_name=f"{plan['dataset_name']}V")
    if final_seed is not None:
        roles = dict(plan["training"].get("roles") or {})
        roles["final"] = {**roles.get("final", {}), "seed": final_seed}
        plan["training"]["roles"] = roles
    return plan


def run_final_seed(run_plan: dict) -> int | None:
    """The training seed of the run's own final model (None where the plan leaves it to nnU-Net)."""
    return TrainingSection.from_dict(run_plan.get("training")).for_role("final").get("seed")


def check_final_seeds(own: int | None, final_seeds: list) -> None:
    """A retrained final with the run's own training seed ``own`` is the stock arm again, not another seed."""
    if own is not None and own in final_seeds:
        raise SystemExit(f"--final-seeds: {own} is the training seed of the run's own final model "
                         f"(its plan's training seed); the stock arm is that training. Give other seeds, "
                         f"e.g. --final-seeds {' '.join(str(s) for s in other_seeds(own))}")


def other_seeds(own: int | None, n: int = 2) -> list:
    """The first ``n`` training seeds from 1 up that differ from ``own``."""
    return [s for s in range(1, n + 2) if s != own][:n]


def trained_models(run: Path) -> list:
    """The run's trained models other than M0 (generation models and the final one)."""
    return sorted(p.name for p in (run / "models").iterdir() if p.is_dir() and p.name != "M0")


def run_arm(args, final_seed: int | None) -> Path:
    name = "stock" if final_seed is None else f"final_seed{final_seed}"
    plan = control_plan(json.loads((args.run / "plan.json").read_text()), args.dataset_id, final_seed)
    models = [m for m in trained_models(args.run) if final_seed is None or m != "final"]
    return run_control(args, name, plan, args.run, models)


def summary(run_dir: Path) -> dict:
    """DSC on V per generation and of the final model, and the final's per-case (DSC, voxels) on V."""
    report = json.loads((run_dir / "report.json").read_text())
    final = run_dir / "eval" / "final" / "E.json"
    return {"V": {str(g["generation"]): g.get("test_dsc") for g in report["generations"]},
            "final_per_case": per_case(final) if final.is_file() else {}}


def figure(run: Path, work: Path, arms: list, path: Path, own_seed: int | None) -> None:
    """Per case, DSC of M_T-1 and of each arm's final model (the stock one trained with ``own_seed``):
    on E from the comparison's run (left) and on V from the control's runs (right)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last = max(int(p.name[1:].split("_")[0]) for p in (run / "models").iterdir() if p.name.startswith("g"))
    model = f"g{last}_comb"
    own = f"final (seed {own_seed})"
    panels = {"E (the comparison's run)": {f"M_{last}": run / "eval" / model / "E.json",
                                           own: run / "eval" / "final" / "E.json"},
              "V (the control's runs)": {f"M_{last}": work / "stock" / "eval" / model / "E.json",
                                         **{own if a == "stock" else f"final (seed {a[len('final_seed'):]})":
                                            work / a / "eval" / "final" / "E.json" for a in arms}}}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    for ax, (title, series) in zip(axes, panels.items()):
        scores = {k: per_case(f) for k, f in series.items() if f.is_file()}
        cases = sorted(next(iter(scores.values())))
        width = 0.8 / len(scores)
        for i, (name, s) in enumerate(scores.items()):
            y = [100 * s[c][0] for c in cases]
            ax.bar([j + i * width for j in range(len(cases))], y, width,
                   label=f"{name}: mean {sum(y) / len(y):.1f}")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cases))], [c[-4:] for c in cases], fontsize=8)
        ax.set_ylabel("DSC (%)")
        ax.set_title(title)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"ATSO, {run.parent.name}: M_{last} against final models trained with other training seeds")
    save_figure(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    ap.add_argument("--run", type=Path, required=True, help="the comparison's finished run folder of one seed and method")
    control_arguments(ap)
    ap.add_argument("--final-seeds", type=int, nargs="*", default=None,
                    help="training seeds of the retrained final models, other than the run's own (the stock arm "
                         "always runs first; default: the first two from 1 up that differ from the run's own)")
    ap.add_argument("--figure", type=Path, default=None,
                    help="only draw the per-case figure (M_T-1 and the finals, on E and on V) of finished arms to this PNG")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    own_seed = run_final_seed(json.loads((args.run / "plan.json").read_text()))
    if args.final_seeds is None:
        args.final_seeds = other_seeds(own_seed)
    if args.figure:
        figure(args.run, args.work, ["stock", *(f"final_seed{s}" for s in args.final_seeds)], args.figure, own_seed)
        return 0
    check_final_seeds(own_seed, args.final_seeds)
    arms = {}
    for seed in [None, *args.final_seeds]:   # control.json after each arm: a stopped control keeps its finished arms
        arms["stock" if seed is None else f"final_seed{seed}"] = summary(run_arm(args, seed))
        (args.work / "control.json").write_text(json.dumps(arms, indent=1))
    gens = sorted(arms["stock"]["V"], key=int)
    print("| arm | " + " | ".join(f"G{g} on V" for g in gens) + " |")
    print("|---|" + "---:|" * len(gens))
    for arm, r in arms.items():
        print(f"| {arm} | " + " | ".join("-" if r["V"].get(g) is None else f"{100 * r['V'][g]:.1f}" for g in gens) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
