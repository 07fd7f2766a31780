"""Calibrate the synthetic benchmark regime with labeled-only and oracle runs only.

    nice -n 5 .venv/bin/python benchmarks/calibrate_regime.py --work /work/calib_runs [--epochs 100]

Each configuration is an ordinary run folder of the real driver (``atso_nnunet_run --plan <plan>
--method supervised --views axial --run-dir ...``), one training at a time:

- ``lo<k>``: labeled-only, ``k`` labeled domain-A training cases (the first ``k`` of one seeded
  permutation, so 2 lie inside 4 inside 8), the rest of the training cases as (unused) reference;
- ``oracle``: every training case labeled with its true label (S + R), no reference set;
- ``@2N``: the same at twice the iterations (convergence check); ``#r<i>``: a repeat of the same
  plan in another run folder (training is not bit-deterministic: run-to-run spread).

No semi-supervised method is run or read here: the regime is fixed before methods are compared.
Rerunning the same command skips the configurations already in the results file and lets the
driver continue an unfinished run folder. Several instances with disjoint ``--configs`` may run at
once (for example one per CPU core): each re-reads the results file under a lock before adding its row. Results go to ``<out>/<tag>/results.csv`` and
``results.json`` after every configuration; run folders stay under ``--work``.
"""
from __future__ import annotations

import argparse
import csv
import fcntl
import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
logger = logging.getLogger("calibrate_regime")

# Order matters: the regime's two conditions first (gap at N, oracle at 2N), then the curve, repeats.
DEFAULT_CONFIGS = ("lo2", "oracle", "oracle@2N", "lo4", "lo8", "lo2@2N", "lo2#r1", "oracle#r1",
                   "lo2#r2", "oracle#r2")
FIELDS = ("config", "labeled", "n_labeled", "iterations", "repeat", "test_dsc", "ref_dsc", "train_s", "wall_s",
          "finished_utc", "run_dir", "plan")


# nnU-Net's CPU training calls torch.set_num_threads(multiprocessing.cpu_count()). On this shared
# 2-core machine (load 8-11 from other work) the second OpenMP thread spends its time spinning:
# measured 3.3 s per iteration instead of 0.05 s idle, about 0.9 CPU-s per iteration instead of
# 0.1. A sitecustomize on PYTHONPATH makes cpu_count() report --torch-threads for the child
# processes only; results do not depend on it, wall times do.
SHIM = """import multiprocessing
import os

_n = os.environ.get("CALIB_TORCH_THREADS")
if _n:
    multiprocessing.cpu_count = lambda: int(_n)
"""


def child_env(work: Path, threads: int) -> dict:
    """Environment of the driver: one torch thread (see SHIM), passive OpenMP waiting."""
    env = dict(os.environ)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    if threads > 0:
        shim = work / "pyshim"
        shim.mkdir(parents=True, exist_ok=True)
        (shim / "sitecustomize.py").write_text(SHIM)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(shim), env.get("PYTHONPATH", "")) if p)
        env["CALIB_TORCH_THREADS"] = str(threads)
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _synthetic_plans():
    spec = importlib.util.spec_from_file_location("make_synthetic_plans", REPO / "tools" / "make_synthetic_plans.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_config(name: str):
    """``lo2@2N#r1`` -> (labeled count or "all", iteration multiplier, repeat); ``@0.5N`` is allowed."""
    base, _, rep = name.partition("#r")
    base, _, mult = base.partition("@")
    n_labeled = "all" if base == "oracle" else int(base[2:]) if base.startswith("lo") and base[2:].isdigit() else None
    if n_labeled is None or (mult and not mult.endswith("N")):
        raise ValueError(f"configuration {name!r}: expected lo<k> or oracle, optional @<m>N, optional #r<i>")
    factor = float(mult[:-1] or 1) if mult else 1.0
    return n_labeled, int(factor) if factor.is_integer() else factor, int(rep or 0)


def build_plan(msp, args, name: str) -> dict:
    n_labeled, mult, _ = parse_config(name)
    generator = msp.bench_generator("A", n_cases=args.n_cases, seed=args.data_seed, shape=args.shape,
                                    spacing=args.spacing, noise_sigma=args.noise_sigma)
    schedule = {**msp.BENCH_SCHEDULE, "num_epochs": round(args.epochs * mult), "num_iterations_per_epoch": args.iters}
    network = {**msp.NETWORK, **({"max_features": args.max_features} if args.max_features else {})}
    # One experiment dataset per labeled set: repeats and the 2N runs reuse its preprocessing.
    key = "all" if n_labeled == "all" else f"{n_labeled}"
    dataset_id = args.dataset_id_base + (99 if n_labeled == "all" else n_labeled)
    from atso_nnunet.data.layout import dataset_folder_name

    source = dataset_folder_name(args.dataset_id_base, f"Calib{args.tag}Src")
    scored = (f"scored on the validation set V (cases {args.n_test + 1}-{args.n_test + args.n_val} sorted; "
              f"the test set E, the first {args.n_test}, is not in this plan)" if args.n_val else "scored on E")
    # the note names this script by its first path (scripts/): a run folder records its plan, note
    # included, and a reworded note would make the calibration's runs refuse to resume
    plan = msp.bench_plan(n_labeled, dataset_id, f"Calib{args.tag}L{key}", seed=args.label_seed,
                          generator=generator, schedule=schedule, source=source, n_test=args.n_test,
                          n_val=args.n_val, score_validation=args.n_val > 0, network=network,
                          note=f"calibration configuration {name} (scripts/calibrate_regime.py, tag {args.tag}), {scored}")
    return plan


def read_scores(run_dir: Path):
    """M0's scores in percent: (mean test DSC, mean reference DSC or None, per-case test DSCs)."""
    report = json.loads((run_dir / "report.json").read_text())
    g0 = next(g for g in report["generations"] if g["generation"] == 0)
    if g0.get("test_dsc") is None:
        raise RuntimeError(f"no test score in {run_dir / 'report.json'}")
    ref = g0.get("reference_dsc")
    scores = run_dir / "eval" / "M0" / "E.json"
    cases = json.loads(scores.read_text())["details"]["cases"] if scores.is_file() else []
    per_case = {c["case"]: round(100 * c["dsc"]["1"], 2) for c in cases}
    return 100 * g0["test_dsc"], None if ref is None else 100 * ref, per_case


def vote_view_ratio(run_dir: Path, reference) -> Optional[float]:
    """Label-free: median over R of M0's fused (voted) foreground volume / the mean of its views'.

    The drift monitor's ``vote_vs_views`` (:func:`atso_nnunet.monitors.drift.volume_record`) on the
    run's own files (``pseudolabels/R_g0`` and ``predictions/M0/<view>/``); no label is read. Issue
    25's fusion rule: the majority vote if this is >= 0.85, else the views' mean probability. None
    for a one-view run or when files are missing.
    """
    from atso_nnunet.data.layout import FILE_ENDING
    from atso_nnunet.monitors.drift import volume_record

    labels = run_dir / "pseudolabels" / "R_g0"
    views = sorted(p for p in (run_dir / "predictions" / "M0").glob("*") if p.is_dir())
    if len(views) < 2 or not all((f / f"{c}{FILE_ENDING}").is_file() for f in [labels, *views] for c in reference):
        return None
    ratio = volume_record(labels, reference, [(reference, views)])["vote_vs_views"]
    return None if ratio is None else round(ratio, 3)


def train_seconds(run_dir: Path):
    """Wall seconds of the training step(s), from the driver's completion markers."""
    total = 0.0
    for marker in run_dir.rglob("*.done"):
        if "/train/" in str(marker) or "train" in marker.name:
            try:
                total += float(json.loads(marker.read_text()).get("seconds", 0.0))
            except (ValueError, OSError):
                pass
    return round(total, 1) if total else None


def load_results(path: Path) -> list:
    return json.loads(path.read_text()) if path.is_file() else []


def add_result(row: dict, out: Path) -> list:
    """Append ``row`` to the results file and return all rows.

    The file is re-read under an exclusive lock, so several instances of this script (each with
    its own ``--configs``, e.g. one per CPU core) can share one results file without losing rows.
    """
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = [r for r in load_results(out / "results.json") if r["config"] != row["config"]] + [row]
        save_results(rows, out)
    return rows


def save_results(rows: list, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"results.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(rows, indent=2) + "\n")
    tmp.replace(out / "results.json")
    with open(out / "results.csv.tmp", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for row in rows:
            w.writerow({k: row.get(k) for k in FIELDS})
    (out / "results.csv.tmp").replace(out / "results.csv")


def _stats(values):
    import statistics

    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else None
    return round(mean, 2), None if sd is None else round(sd, 2)


def summarize(rows: list, out: Path, iters_n: int, rule: dict = None) -> dict:
    """``summary.md`` / ``summary.json`` (learning curve, the regime's two conditions) and ``learning_curve.png``."""
    groups = {}
    for r in rows:
        groups.setdefault((r["labeled"], r["n_labeled"], r["iterations"]), []).append(r)
    table = []
    for (kind, n, iters), rs in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][0] == "oracle", kv[0][1])):
        vals = [r["test_dsc"] for r in rs]
        mean, sd = _stats(vals)
        train = [r["train_s"] for r in rs if r.get("train_s")]
        table.append({"kind": kind, "n_labeled": n, "iterations": iters, "runs": len(vals), "test_dsc_mean": mean,
                      "test_dsc_sd": sd, "test_dsc_runs": vals,
                      "train_s_mean": round(sum(train) / len(train), 1) if train else None,
                      "configs": [r["config"] for r in rs]})
    def mean_at(kind, iters, n=None):
        hit = [t for t in table if t["kind"] == kind and (n is None or t["n_labeled"] == n) and t["iterations"] == iters]
        return hit[0]["test_dsc_mean"] if hit else None

    def first_run(kind, iters, n=None):
        hit = [r for r in rows if r["labeled"] == kind and r["iterations"] == iters and not r.get("repeat")
               and (n is None or r["n_labeled"] == n)]
        return hit[0].get("test_dsc_per_case") if hit else None

    # The conditions at every schedule L that has the runs (r0: gap oracle(L) - labeled-only(k, L) >= 15,
    # gain oracle(2L) - oracle(L) < 1; r1 adds ranges for both): the regime is the shortest schedule
    # that meets them all.
    rule = rule or {"lo_labeled": 2, "gap_min": 15.0, "gain_max": 1.0, "lo_range": None, "oracle_range": None}
    checks = []
    for iters in sorted({t["iterations"] for t in table}):
        oracle, oracle_2x = mean_at("oracle", iters), mean_at("oracle", 2 * iters)
        lo2 = mean_at("labeled-only", iters, rule["lo_labeled"])
        gap = None if oracle is None or lo2 is None else round(oracle - lo2, 2)
        gain = None if oracle is None or oracle_2x is None else round(oracle_2x - oracle, 2)
        a, b = first_run("oracle", iters), first_run("labeled-only", iters, rule["lo_labeled"])
        gap_cases = None  # test-case sampling error of the gap (first runs)
        if a and b and set(a) == set(b) and len(a) > 1:
            mean, sd = _stats([a[c] - b[c] for c in sorted(a)])
            gap_cases = {"n_cases": len(a), "mean": mean, "sd": sd, "se": round(sd / len(a) ** 0.5, 2),
                         "min": round(min(a[c] - b[c] for c in a), 2)}
        def within(v, bounds):
            return None if v is None or bounds is None else bounds[0] <= v <= bounds[1]
        checks.append({"iterations": iters, "labeled_only": lo2, "oracle": oracle,
                       "gap_oracle_minus_lo2": gap, "gap_condition_met": None if gap is None else gap >= rule["gap_min"],
                       "oracle_gain_at_2x": gain,
                       "convergence_condition_met": None if gain is None else abs(gain) < rule["gain_max"],
                       "labeled_only_in_range": within(lo2, rule["lo_range"]),
                       "oracle_in_range": within(oracle, rule["oracle_range"]),
                       "gap_per_test_case": gap_cases})
    regime = next((c["iterations"] for c in checks if c["gap_condition_met"] and c["convergence_condition_met"]
                   and c["labeled_only_in_range"] is not False and c["oracle_in_range"] is not False), None)
    summary = {"iterations_N": iters_n, "rule": rule, "table": table, "conditions": checks,
               "regime_iterations": regime}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["| runs of | labeled | iterations | runs | test DSC mean | sd | each run | training (s) |",
             "|---|---:|---:|---:|---:|---:|---|---:|"]
    for t in table:
        sd = "" if t["test_dsc_sd"] is None else f"{t['test_dsc_sd']:.1f}"
        lines.append(f"| {t['kind']} | {t['n_labeled']} | {t['iterations']} | {t['runs']} | {t['test_dsc_mean']:.1f} | "
                     f"{sd} | {', '.join(f'{v:.1f}' for v in t['test_dsc_runs'])} | {t['train_s_mean'] or ''} |")
    k, lo_r, or_r = rule["lo_labeled"], rule["lo_range"], rule["oracle_range"]
    lines += ["", f"| iterations | labeled-only({k}) (in {lo_r}?) | oracle (in {or_r}?) | "
                  f"oracle - labeled-only({k}) (>= {rule['gap_min']:g}?) | per scored case: sd, standard error, smallest | "
                  f"oracle at 2x - oracle (|.| < {rule['gain_max']:g}?) |", "|---:|---|---|---|---|---|"]
    for c in checks:
        g = c["gap_per_test_case"]
        cases = "" if not g else f"{g['sd']:.1f}, {g['se']:.1f}, {g['min']:.1f} ({g['n_cases']} cases)"
        gap = "" if c["gap_oracle_minus_lo2"] is None else f"{c['gap_oracle_minus_lo2']:.1f} ({c['gap_condition_met']})"
        gain = "" if c["oracle_gain_at_2x"] is None else f"{c['oracle_gain_at_2x']:+.1f} ({c['convergence_condition_met']})"
        lo = "" if c["labeled_only"] is None else f"{c['labeled_only']:.1f} ({c['labeled_only_in_range']})"
        orc = "" if c["oracle"] is None else f"{c['oracle']:.1f} ({c['oracle_in_range']})"
        lines.append(f"| {c['iterations']} | {lo} | {orc} | {gap} | {cases} | {gain} |")
    lines += ["", f"Regime (shortest schedule meeting both conditions): "
                  f"{'not yet established' if regime is None else f'{regime} iterations per training'}."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    plot(table, out / "learning_curve.png")
    return summary


def plot(table: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not table:
        return
    iters = sorted({t["iterations"] for t in table})
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for i, it in enumerate(iters):
        c = colors[i % len(colors)]
        pts = sorted((t for t in table if t["iterations"] == it), key=lambda t: t["n_labeled"])
        lo = [t for t in pts if t["kind"] == "labeled-only"]
        if lo:
            ax.plot([t["n_labeled"] for t in lo], [t["test_dsc_mean"] for t in lo], "o-", color=c,
                    label=f"labeled-only, {it} it")
        for t in pts:
            ax.scatter([t["n_labeled"]] * len(t["test_dsc_runs"]), t["test_dsc_runs"], s=10, color=c, alpha=0.5)
        for t in (t for t in pts if t["kind"] == "oracle"):
            ax.axhline(t["test_dsc_mean"], color=c, ls="--", lw=1, label=f"oracle ({t['n_labeled']} cases), {it} it")
            ax.plot([t["n_labeled"]], [t["test_dsc_mean"]], "s", color=c)
    ax.set_xscale("log", base=2)
    ns = sorted({t["n_labeled"] for t in table})
    ax.set_xticks(ns)
    ax.set_xticklabels([str(n) for n in ns])
    ax.set_xlabel("labeled training cases")
    ax.set_ylabel("test DSC (%), mean over E")
    ax.set_title("Synthetic domain A, axial, labeled-only vs oracle", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/work/calib_runs"), help="run folders (not committed)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "calibration", help="results (committed)")
    p.add_argument("--tag", default="r0", help="regime tag: folder names and dataset names (letters, digits)")
    p.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), help="default: %(default)s")
    p.add_argument("--epochs", type=int, default=100, help="epochs at schedule N (default %(default)s)")
    p.add_argument("--iters", type=int, default=50, help="iterations per epoch (default %(default)s)")
    p.add_argument("--n-cases", type=int, default=28, help="domain-A cases (default %(default)s)")
    p.add_argument("--n-test", type=int, default=8, help="test cases, the first sorted ids (default %(default)s)")
    p.add_argument("--shape", type=int, nargs=3, default=None, help="x y z voxels (default: the demo's)")
    p.add_argument("--spacing", type=float, nargs=3, default=None, help="x y z mm (default: the demo's)")
    p.add_argument("--noise-sigma", type=float, default=None, help="image noise, HU (default: the domain's)")
    p.add_argument("--data-seed", type=int, default=0, help="generator seed")
    p.add_argument("--label-seed", type=int, default=0, help="seed of the labeled draw")
    p.add_argument("--dataset-id-base", type=int, default=900, help="source id; experiment ids base + k, base + 99")
    p.add_argument("--torch-threads", type=int, default=1, help="torch threads of the trainings (0: nnU-Net's "
                   "cpu_count(); default %(default)s, see SHIM)")
    p.add_argument("--n-val", type=int, default=0, help="validation cases after the test cases; > 0: the runs "
                   "score V and E is left out of their plans (default %(default)s: score E, as r0 did)")
    p.add_argument("--views", nargs="+", default=["axial"], help="views of the runs (default %(default)s)")
    p.add_argument("--max-features", type=int, default=None, help="network max_features (default: the demo's 16)")
    p.add_argument("--cpu-jobs", type=int, default=1, help="the driver's --cpu-jobs (default %(default)s)")
    p.add_argument("--lo-labeled", type=int, default=2, help="the labeled-only run the conditions read (lo<k>)")
    p.add_argument("--gap-min", type=float, default=15.0, help="oracle - labeled-only at least this (DSC points)")
    p.add_argument("--gain-max", type=float, default=1.0, help="|oracle at 2N - oracle| below this")
    p.add_argument("--lo-range", type=float, nargs=2, default=None, help="labeled-only DSC must lie in [a, b]")
    p.add_argument("--oracle-range", type=float, nargs=2, default=None, help="oracle DSC must lie in [a, b]")
    p.add_argument("--dry-run", action="store_true", help="write the plans and print the commands only")
    p.add_argument("--summarize", action="store_true", help="only rewrite the summary and plot from the results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    msp = _synthetic_plans()
    work = args.work.resolve() / args.tag
    out = args.out / args.tag
    nnunet_dir, plan_dir = work / "nnunet", work / "plans"
    plan_dir.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.json"
    rows = load_results(results_file)
    done = {r["config"] for r in rows}
    exe = Path(sys.executable).parent / "atso_nnunet_run"
    rule = {"lo_labeled": args.lo_labeled, "gap_min": args.gap_min, "gain_max": args.gain_max,
            "lo_range": args.lo_range, "oracle_range": args.oracle_range}
    if args.summarize:
        summarize(rows, out, args.epochs * args.iters, rule)
        return 0
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")

    for name in args.configs:
        n_labeled, mult, rep = parse_config(name)
        if name in done:
            logger.info("%s: already done, skipped", name)
            continue
        plan = build_plan(msp, args, name)
        plan_file = plan_dir / f"{name.replace('@', '_').replace('#', '_')}.json"
        plan_file.write_text(json.dumps(plan, indent=2) + "\n")
        run_dir = work / "runs" / plan_file.stem
        cmd = [str(exe), "--plan", str(plan_file), "--method", "supervised", "--views", *args.views,
               "--run-dir", str(run_dir), "--nnunet-dir", str(nnunet_dir), "--cpu-jobs", str(args.cpu_jobs)]
        logger.info("%s: %s", name, " ".join(cmd))
        if args.dry_run:
            continue
        t0 = time.time()
        with open(work / f"{plan_file.stem}.log", "a") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env=child_env(work, args.torch_threads)).returncode
        wall = time.time() - t0
        if rc != 0:
            logger.error("%s failed (exit %d); see %s", name, rc, work / f"{plan_file.stem}.log")
            continue
        test, ref, per_case = read_scores(run_dir)
        training = plan.get("training") or plan["schedule"]
        iters = training["num_epochs"] * training["num_iterations_per_epoch"]
        row = {"config": name, "labeled": "oracle" if n_labeled == "all" else "labeled-only",
               "n_labeled": len(plan["labeled"]), "iterations": iters, "repeat": rep,
               "test_dsc": round(test, 2), "ref_dsc": None if ref is None else round(ref, 2),
               "train_s": train_seconds(run_dir), "wall_s": round(wall, 1),
               "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "run_dir": str(run_dir), "plan": str(plan_file), "test_dsc_per_case": per_case,
               "vote_view_volume_ratio_R": vote_view_ratio(run_dir, plan["reference"])}
        rows = add_result(row, out)
        summarize(rows, out, args.epochs * args.iters, rule)
        logger.info("%s: test DSC %.2f, reference DSC %s, %.0f s", name, test, row["ref_dsc"], wall)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
