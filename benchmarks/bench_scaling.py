"""Benchmark: wall time of one ATSO "generation" (six equal jobs) on the local executor.

Six stand-in jobs (``python -c "import time; time.sleep(S)"``) run with N = 1, 2, 3, 6 fake GPU
slots. Ideal wall time is ceil(6 / N) x S; efficiency = ideal / measured. The jobs sleep, so the
number of CPU cores is not a limit; what is measured is the scheduler's overhead (polling,
process start-up).

Usage:
    python benchmarks/bench_scaling.py [--sleep 2.0] [--slots 1 2 3 6] [--jobs 6]
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

from atso_nnunet.execution.jobs import Job
from atso_nnunet.execution.local import LocalExecutor


def run_generation(n_slots: int, n_jobs: int, sleep_s: float, folder: Path) -> float:
    """Wall time of ``n_jobs`` sleeping jobs on ``n_slots`` fake GPUs."""
    jobs = [Job(name=f"n{n_slots}_job{i}", argv=[sys.executable, "-c", f"import time; time.sleep({sleep_s})"],
                log_path=folder / f"n{n_slots}_job{i}.log") for i in range(n_jobs)]
    executor = LocalExecutor(gpus=[str(100 + k) for k in range(n_slots)])
    start = time.monotonic()
    executor.run_batch(jobs)
    return time.monotonic() - start


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleep", type=float, default=2.0, help="seconds each stand-in job sleeps")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2, 3, 6], help="parallel GPU slots N")
    parser.add_argument("--jobs", type=int, default=6, help="jobs per generation (3 views x 2 halves)")
    args = parser.parse_args(argv)
    print(f"{'N':>3}  {'wall (s)':>9}  {'ideal (s)':>9}  {'efficiency':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.slots:
            wall = run_generation(n, args.jobs, args.sleep, Path(tmp))
            ideal = math.ceil(args.jobs / n) * args.sleep
            print(f"{n:>3}  {wall:>9.2f}  {ideal:>9.2f}  {ideal / wall:>10.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
