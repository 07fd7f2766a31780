"""Issue 25, item 7: test the under-segmentation diagnosis with a control scored on V, never on E.

    .venv/bin/python benchmarks/control_volume_prior.py --stso-run /work/bench/r1/seed0/stso \
        --work /work/bench/r1_control --cpu-jobs 2

Diagnosis under test (docs/lab/benchmarks.md, "Item 7"): the students of regime r1 end below M0
because M0's pseudo-labels hold about half of the organ, and students trained on 27 such cases and
3 true ones learn the smaller organ. The control changes only that: the same M0's pseudo-labels
thresholded to the labeled cases' mean organ volume (plan key ``pseudo_label_volume:
labeled_mean``, a rule fixed before the control ran and read from the labeled set S only).

Two one-generation STSO runs of the real driver, both scoring the validation set V as their test
set (so nothing here reads E):

- ``stock``: the comparison's STSO run as it was (its M0 and G1 checkpoints are copied in and adopted;
  only the predictions of V and R are made);
- ``matched``: the same M0 (copied), its pseudo-labels volume-matched, a G1 student trained on them
  with the same training settings and seed.

Each run gets its own experiment dataset id (the comparison's plus 1000 is out of range, so
``--dataset-id``, default 951) and its own nnU-Net folders, so a comparison running beside it is
untouched. Rerunning continues. The table it prints: DSC on V of M0 and G1, pseudo-label DSC and
volume on R (R's truth read for the record only).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

logger = logging.getLogger("control_volume_prior")
ARMS = {"stock": "predicted", "matched": "labeled_mean"}


def control_plan(stso_plan: dict, arm: str, dataset_id: int, generations: int = 1) -> dict:
    """The comparison run's plan, ``generations`` generations, V as the test set, the arm's pseudo-label volume."""
    plan = dict(stso_plan)
    if not plan.get("validation"):
        raise SystemExit(f"{plan['name']}: the plan has no validation set V to score the control on")
    plan.update(name=f"{plan['name']} [item 7 control: {arm}, scored on V]", generations=generations,
                test=list(plan["validation"]), validation=[], dataset_id=dataset_id,
                dataset_name=f"{plan['dataset_name']}V", pseudo_label_volume=ARMS[arm])
    return plan


def place_model(src_run: Path, model: str, dst_run: Path, dataset_dir_name: str) -> None:
    """Copy a trained model's nnU-Net folders into the control run, where its driver adopts them."""
    src = src_run / "models" / model / "nnUNet_results"
    (src_dataset,) = [d for d in src.iterdir() if d.is_dir()]
    dst = dst_run / "models" / model / "nnUNet_results" / dataset_dir_name
    if dst.exists():
        return
    shutil.copytree(src_dataset, dst, ignore=shutil.ignore_patterns("checkpoint_latest.pth", "checkpoint_best.pth",
                                                                    "*.png"))
    logger.info("%s: %s copied from %s", dst_run.name, model, src_run)


def model_source(source_run: Path, model: str, work: Path, run_dir: Path) -> Optional[Path]:
    """The run folder holding a trained ``model`` to copy: the seed's labeled-only run (M0), the source run,
    else another control run under ``work`` that trained it (a retrained M0 is shared by the arms)."""
    candidates = [source_run.parent / "supervised"] if model == "M0" else []
    candidates += [source_run, *sorted(d for d in work.iterdir() if d.is_dir() and d != run_dir)]
    for run in candidates:
        results = run / "models" / model / "nnUNet_results"
        trainings = sorted(results.glob("*/*/fold_all")) if results.is_dir() else []
        if trainings and all((t / "checkpoint_final.pth").is_file() for t in trainings):
            return run
    return None


def run_control(args, name: str, plan: dict, source_run: Path, models) -> Path:
    """Run the real driver on ``plan`` in ``<work>/<name>``, with M0 and ``models`` copied in first (from
    :func:`model_source`), so that only what differs runs; a model no run kept is trained again."""
    run_dir = args.work / name
    run_dir.mkdir(parents=True, exist_ok=True)
    plan_file = args.work / f"plan_{name}.json"
    plan_file.write_text(json.dumps(plan, indent=1))
    dataset = f"Dataset{args.dataset_id:03d}_{plan['dataset_name']}"
    for model in ["M0", *models]:
        src = model_source(source_run, model, args.work, run_dir)
        if src is None:
            logger.warning("%s: no trained %s to copy (not kept with the comparison's records): the driver trains "
                           "it again, with the comparison's settings and training seed", name, model)
        else:
            place_model(src, model, run_dir, dataset)
    cmd = [str(Path(sys.executable).with_name("atso_nnunet_run")), "--plan", str(plan_file), "--run-dir", str(run_dir),
           "--nnunet-dir", str(args.work / "nnunet"), "--cpu-jobs", str(args.cpu_jobs)]
    logger.info("%s: %s", name, " ".join(cmd))
    subprocess.run(cmd, check=True)
    return run_dir


def control_arguments(ap: argparse.ArgumentParser) -> None:
    """The options every control script shares: where it works, its dataset id, its CPU jobs."""
    ap.add_argument("--work", type=Path, required=True, help="folder for the control's runs and nnU-Net folders")
    ap.add_argument("--dataset-id", type=int, default=951, help="experiment dataset id of the control runs")
    ap.add_argument("--cpu-jobs", type=int, default=2)


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    logger.info("figure: %s", path)


def run_arm(args, arm: str) -> Path:
    plan = control_plan(json.loads((args.stso_run / "plan.json").read_text()), arm, args.dataset_id, args.generations)
    name = arm if args.generations == 1 else f"{arm}_g{args.generations}"
    models = [f"g{t}_all" for t in range(1, args.generations + 1)] if arm == "stock" else []
    return run_control(args, name, plan, args.stso_run, models)


def summary(run_dir: Path) -> dict:
    report = json.loads((run_dir / "report.json").read_text())
    rows = {g["generation"]: g for g in report["generations"]}
    fuse = json.loads((run_dir / "state" / "g0" / "fuse" / "R_g0.done").read_text()) \
        if (run_dir / "state" / "g0" / "fuse" / "R_g0.done").is_file() else {}
    return {"V": {t: rows[t].get("test_dsc") for t in rows}, "R": {t: rows[t].get("reference_dsc") for t in rows},
            "R_ml": {t: rows[t].get("pseudo_label_volume_ml") for t in rows}, "threshold": (fuse.get("volume_match") or {}).get("threshold", 0.5)}


def per_case(eval_file: Path) -> dict:
    """case -> (DSC, predicted voxels) of one evaluation record."""
    cases = json.loads(eval_file.read_text())["details"]["cases"]
    return {c["case"]: (c["dsc"]["1"], c["voxels_pred"]["1"]) for c in cases}


def figure(sets: dict, last: int, path: Path) -> None:
    """Per case: M0's DSC against the change to generation ``last``'s student, one colour per set.

    Args:
        sets: set name -> (eval folder of M0, eval folder of the student), each holding ``<part>.json``.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for (name, (m0, student)), colour in zip(sets.items(), ("tab:blue", "tab:orange", "tab:green")):
        a, b = per_case(m0), per_case(student)
        x = [100 * a[c][0] for c in sorted(a)]
        y = [100 * (b[c][0] - a[c][0]) for c in sorted(a)]
        ax.scatter(x, y, color=colour, label=f"{name}: mean {sum(y) / len(y):+.1f}")
        for c, xi, yi in zip(sorted(a), x, y):
            ax.annotate(c[-4:], (xi, yi), fontsize=7, xytext=(3, 2), textcoords="offset points")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("M0's DSC on the case (%)")
    ax.set_ylabel(f"G{last} student - M0 (DSC points)")
    ax.set_title(f"STSO per case, M0 -> G{last} student")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stso-run", type=Path, required=True, help="the comparison's finished STSO run folder of one seed")
    control_arguments(ap)
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--figure", type=Path, default=None,
                    help="only draw the per-case figure (M0 against the last stock student, on E from --stso-run "
                         "and on V from the stock control run) to this PNG")
    ap.add_argument("--generations", type=int, default=1,
                    help="generations of the control runs (stock: the comparison's students are copied in; "
                         "matched: trained); run folders <arm>_g<T> when above 1")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.figure:
        T = args.generations
        stock = args.work / ("stock" if T == 1 else f"stock_g{T}")
        figure({"E (the comparison)": (args.stso_run / "eval" / "M0" / "E.json", args.stso_run / "eval" / f"g{T}_all" / "E.json"),
                "V (the control)": (stock / "eval" / "M0" / "E.json", stock / "eval" / f"g{T}_all" / "E.json")},
               T, args.figure)
        return 0
    results = {arm: summary(run_arm(args, arm)) for arm in args.arms}
    suffix = "" if args.generations == 1 else f"_g{args.generations}"
    (args.work / f"control{suffix}.json").write_text(json.dumps(results, indent=1))
    gens = range(args.generations + 1)
    print("| arm | R_g0 threshold | " + " | ".join(f"G{t} on V" for t in gens) + " | "
          + " | ".join(f"R_g{t} DSC (mL)" for t in gens) + " |")
    print("|---|---:|" + "---:|" * (2 * len(gens)))
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}"                                # noqa: E731
    for arm, r in results.items():
        print(f"| {arm} | {r['threshold']:.3f} | " + " | ".join(pct(r["V"].get(t)) for t in gens) + " | "
              + " | ".join(f"{pct(r['R'].get(t))} ({r['R_ml'].get(t) or 0:.1f})" for t in gens) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
