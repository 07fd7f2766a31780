"""How much of a GPU one benchmark training uses, and what sharing it (--jobs-per-gpu) buys.

Runs the labeled-only M0 of a plan (tri-view: three independent trainings) on one GPU in phases,
each for a fixed wall-clock time: first with --jobs-per-gpu 1 (the views one after another), then
with --jobs-per-gpu N (continuing the same resumable run: the interrupted view resumes, the others
start beside it). Prints, per training log, the steady wall-clock seconds per epoch (median of its
epochs after the first three, timed by atso_nnunet.nnunet.training_log.epoch_seconds) and the mean GPU
utilisation nvidia-smi saw in each phase.

    python benchmarks/bench_gpu_sharing.py --out /tmp/gpu_share --gpu 0            # bench_10pct, 140 s + 150 s
    python benchmarks/bench_gpu_sharing.py -d synthetic -f bench_10pct --jobs 1 3 --seconds 140 150 --out DIR

Figures (H200, 2026-11-30) are in docs/lab/benchmarks.md, "On a GPU". Needs a CUDA GPU and nvidia-smi.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional, Sequence

from atso_nnunet.nnunet.training_log import epoch_seconds

logger = logging.getLogger("bench_gpu_sharing")


def sample_utilisation(gpu: str, stop: threading.Event, out: List[float]) -> None:
    """Append the GPU's utilisation (%) every 2 s until ``stop`` is set."""
    while not stop.is_set():
        res = subprocess.run(["nvidia-smi", "-i", gpu, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True)
        if res.returncode == 0 and res.stdout.strip():
            out.append(float(res.stdout.split()[0]))
        stop.wait(2.0)


def steady_seconds(log: Path, skip: int = 3) -> Optional[float]:
    times = epoch_seconds(log.read_text(errors="replace"))[skip:]
    return statistics.median(times) if times else None


def run_phase(cmd: Sequence[str], jobs: int, seconds: float, gpu: str, log_file: Path) -> float:
    """Run the comparison with ``--jobs-per-gpu jobs`` for ``seconds``; return mean GPU utilisation."""
    util: List[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_utilisation, args=(gpu, stop, util), daemon=True)
    sampler.start()
    with open(log_file, "w") as log:
        proc = subprocess.Popen([*cmd, "--jobs-per-gpu", str(jobs)], stdout=log, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.terminate()        # the driver stops its jobs; the run resumes in the next phase
            proc.wait(timeout=60)
    stop.set()
    sampler.join()
    return statistics.fmean(util) if util else float("nan")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-d", "--dataset", default="synthetic")
    p.add_argument("-f", "--split", default="bench_10pct")
    p.add_argument("--out", type=Path, required=True, help="working folder (run and nnU-Net folders)")
    p.add_argument("--gpu", default="0", help="GPU id (default 0)")
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 3], help="--jobs-per-gpu of each phase")
    p.add_argument("--seconds", type=float, nargs="+", default=[140, 150], help="wall-clock seconds of each phase")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if len(args.jobs) != len(args.seconds):
        p.error("--jobs and --seconds need one value per phase")
    if shutil.which("nvidia-smi") is None:
        p.error("nvidia-smi not found: this benchmark needs a CUDA GPU")
    compare = Path(sys.executable).parent / "atso_nnunet_compare"
    cmd = [str(compare) if compare.exists() else "atso_nnunet_compare", "-d", args.dataset, "-f", args.split,
           "--seeds", "0", "--methods", "supervised", "--out", str(args.out / "bench"),
           "--nnunet-dir", str(args.out / "nnunet"), "--gpus", args.gpu]
    args.out.mkdir(parents=True, exist_ok=True)
    seen: set = set()
    for i, (jobs, seconds) in enumerate(zip(args.jobs, args.seconds), 1):
        logger.info("phase %d: --jobs-per-gpu %d for %.0f s", i, jobs, seconds)
        util = run_phase(cmd, jobs, seconds, args.gpu, args.out / f"phase{i}.log")
        logs = sorted(set((args.out / "bench").rglob("training_log_*.txt")) - seen)
        seen.update(logs)
        print(f"phase {i} (--jobs-per-gpu {jobs}, {seconds:.0f} s): mean GPU utilisation {util:.1f} %")
        for log in logs:
            steady = steady_seconds(log)
            view = log.parent.parent.name.split("__")[1] if "__" in log.parent.parent.name else log.parent.parent.name
            print(f"  {view}: {'n/a' if steady is None else f'{steady:.2f} s'} per epoch (steady, wall clock)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
