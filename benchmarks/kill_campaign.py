"""Kill anywhere, lose nothing: SIGKILL the driver at random moments of a tiny run, restart, check.

A tiny ATSO run (two views, two generations, the test suite's tiny volumes and network) is
started with ``atso_nnunet_run``; the driver process (only the driver: its nnU-Net children are
left to the kernel, as after ``kill -9`` or an out-of-memory kill) is SIGKILLed ``--kills`` times
at random moments and started again each time; then the run is left to finish.

Kill moments are spread over the whole schedule: for kill i a target number of finished steps
k_i (sorted, uniform over the schedule's steps, ``prepare`` included) and a delay d_i (uniform
in ``[0, --max-delay]`` s) are drawn; the driver is killed d_i seconds after the run reaches k_i
finished steps (or earlier if it finishes first). Everything is seeded (``--seed``).

Checked after every kill and restart:

* no child of the killed driver is left running ``--grace`` seconds after the kill: neither a
  descendant of the driver at the moment of the kill (nnU-Net commands, warm workers, data
  loaders) nor any process whose command line or environment names the run folder;
* no completion marker that existed at an earlier kill has changed (content and mtime);
* every pseudo-label set whose fuse step had finished at an earlier kill is byte-identical;
* every file of a finished fuse step (pseudo-labels, fused predictions) is complete.

At the end: the driver exits 0, the report is present with a final score, no temporary file
(``*.partial*``, ``.staging-*``, ``.partial_*``) is left in the run or nnU-Net folders, every
``.nii.gz`` of the run folder is complete (gzip stream and voxel count), and no process of the
run is left.

Prints a markdown summary (and writes ``<work>/kill_campaign.json``); exit status 0 when every
check passed, 1 otherwise.

Usage::

    nice -n 10 .venv/bin/python benchmarks/kill_campaign.py --work /tmp/kill_campaign --kills 20 --seed 0
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from helpers import write_tiny_dataset  # noqa: E402  (the test suite's tiny volumes)

TEMP_PATTERNS = (re.compile(r"\.partial"), re.compile(r"^\.staging-"), re.compile(r"^\.partial_"))


def tiny_plan(views=("axial", "coronal"), generations: int = 2) -> dict:
    """The test suite's tiny plan (tests/helpers.py), with two views and two generations."""
    return {
        "name": "kill campaign", "sources": ["Dataset990_Tiny"], "dataset_id": 991, "dataset_name": "TinyExp",
        "labeled": ["tiny_000", "tiny_001", "tiny_002"],
        "reference": ["tiny_003", "tiny_004", "tiny_005", "tiny_006"],
        "test": ["tiny_007", "tiny_008"], "method": "atso", "generations": generations, "views": list(views),
        "network": {"batch_size": 2, "max_features": 16, "n_stages": 3},
        "training": {"num_epochs": 1, "num_iterations_per_epoch": 2, "num_val_iterations_per_epoch": 1,
                     "final_validation": False, "test_time_augmentation": False},
    }


# ---------------------------------------------------------------------------------------------
# observations


def run_processes(needle: str, exclude: Tuple[int, ...] = ()) -> List[Tuple[int, str]]:
    """(pid, command line) of live processes whose command line or environment contains ``needle``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
            state = next((ln.split()[1] for ln in (entry / "status").read_text().splitlines()
                          if ln.startswith("State:")), "?")
        except (OSError, StopIteration):
            continue
        if state == "Z":           # a zombie is dead; its parent has not reaped it yet
            continue
        if needle in cmdline or needle in environ:
            found.append((int(entry.name), cmdline.strip()[:200]))
    return found


def descendants(pid: int) -> List[Tuple[int, str]]:
    """(pid, command line) of every live descendant of ``pid`` (children, their workers, ...)."""
    parent: Dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for child, ppid in parent.items():
            if ppid == p:
                todo.append(child)
                try:
                    cmd = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    cmd = "?"
                out.append((child, cmd.strip()[:200]))
    return out


def alive(pids) -> List[int]:
    out = []
    for pid in pids:
        try:
            state = next((ln.split()[1] for ln in (Path("/proc") / str(pid) / "status").read_text().splitlines()
                          if ln.startswith("State:")), "?")
        except OSError:
            continue
        if state != "Z":
            out.append(pid)
    return out


def markers(run: Path) -> Dict[str, Tuple[str, int]]:
    """Completion markers: step id -> (content, mtime_ns)."""
    state = run / "state"
    if not state.is_dir():
        return {}
    out = {}
    for p in state.rglob("*.done"):
        if p.name.startswith("."):          # a marker being written (atomic temporary)
            continue
        try:
            out[str(p.relative_to(state))[:-len(".done")]] = (p.read_text(), p.stat().st_mtime_ns)
        except FileNotFoundError:
            continue
    return out


def file_digests(folder: Path) -> Dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def finished_fuse_folders(run: Path, done: Dict[str, Tuple[str, int]]) -> Dict[str, Path]:
    """Folder of every finished fuse step (``g1/fuse/R_g1`` -> pseudolabels/R_g1; labels -> fused/...)."""
    out = {}
    for step in done:
        parts = step.split("/")
        if len(parts) >= 3 and parts[1] == "fuse":
            name = "/".join(parts[2:])
            out[step] = run / "pseudolabels" / name if name.startswith("R_g") else run / "fused" / name
    return out


def incomplete_images(folder: Path) -> List[str]:
    """``.nii.gz`` files (final names, not temporaries) whose voxel data is truncated or corrupt."""
    from atso_nnunet.data.integrity import file_problem

    bad = []
    for p in sorted(folder.rglob("*.nii.gz")):
        if p.name.startswith(".") or any(part.startswith(".") for part in p.relative_to(folder).parts[:-1]):
            continue
        problem = file_problem(p)
        if problem:
            bad.append(problem)
    return bad


def temporaries(*roots: Path) -> List[str]:
    out = []
    for root in roots:
        if root.is_dir():
            out += [str(p) for p in root.rglob("*") if any(t.search(p.name) for t in TEMP_PATTERNS)]
    return sorted(out)


def log_size(run: Path) -> int:
    log = run / "run.log"
    return log.stat().st_size if log.is_file() else 0


def last_log_line(run: Path, size_at_start: int) -> str:
    """The driver's last log line since it was started (what it was doing when killed)."""
    log = run / "run.log"
    if not log.is_file() or log.stat().st_size <= size_at_start:
        return "(driver starting: nothing logged yet)"
    with open(log, "rb") as f:
        f.seek(size_at_start)
        lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:160] if lines else "(driver starting: nothing logged yet)"


# ---------------------------------------------------------------------------------------------
# the campaign


@dataclass
class Kill:
    index: int
    target_steps: int
    delay_s: float
    steps_done_at_kill: int = 0
    seconds_after_start: float = 0.0
    during: str = ""
    children: int = 0                  # live descendants of the driver at the kill
    children_gone_s: Optional[float] = None
    problems: List[str] = field(default_factory=list)


def count_steps(cmd: List[str], env: dict) -> int:
    res = subprocess.run(cmd + ["--dry-run"], env=env, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise SystemExit(f"dry run failed:\n{res.stderr[-2000:]}")
    m = re.search(r"^# (\d+) steps", res.stdout, re.M)
    return int(m.group(1)) + 1          # + prepare


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (emptied first)")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=12.0, help="seconds; see the docstring")
    parser.add_argument("--grace", type=float, default=30.0,
                        help="seconds the killed driver's children get to exit (they get SIGTERM on its death)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds for the whole campaign")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    work = args.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    nn, run = work / "nn", work / "run"
    write_tiny_dataset(nn / "nnUNet_raw", dataset_id=990, name="Tiny", n_labeled=9, n_reference=0, n_test=0)
    plan_file = work / "plan.json"
    plan_file.write_text(json.dumps(tiny_plan(), indent=2))
    cmd = [sys.executable, "-m", "atso_nnunet.cli.run", "--plan", str(plan_file), "--nnunet-dir", str(nn),
           "--run-dir", str(run), "--num-processes", "1"]
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_n_proc_DA"}
    n_steps = count_steps(cmd, env)
    shutil.rmtree(run)                  # the dry run wrote plan.json only; start from nothing
    targets = sorted(rng.randrange(0, n_steps) for _ in range(args.kills))
    kills = [Kill(i + 1, t, round(rng.uniform(0, args.max_delay), 2)) for i, t in enumerate(targets)]
    print(f"# {n_steps} steps (prepare included); {args.kills} kills; seed {args.seed}", flush=True)

    t_start = time.monotonic()
    seen_markers: Dict[str, Tuple[str, int]] = {}
    seen_sets: Dict[str, Dict[str, str]] = {}
    problems: List[str] = []
    log = open(work / "driver_output.log", "ab")
    restarts = 0

    def check_state(when: str) -> List[str]:
        found = []
        now = markers(run)
        for step, value in seen_markers.items():
            if step not in now:
                found.append(f"{when}: marker {step} disappeared")
            elif now[step] != value:
                found.append(f"{when}: marker {step} changed")
        for step, folder in finished_fuse_folders(run, now).items():
            if step in seen_sets and file_digests(folder) != seen_sets[step]:
                found.append(f"{when}: files of {step} ({folder}) changed")
            found += [f"{when}: {p}" for p in incomplete_images(folder)]
        return found

    finished_early = False
    for kill in kills:
        size_at_start = log_size(run)
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        restarts += 1
        t0 = time.monotonic()
        reached = None
        while proc.poll() is None:
            if reached is None and len(markers(run)) >= kill.target_steps:
                reached = time.monotonic()
            if reached is not None and time.monotonic() - reached >= kill.delay_s:
                break
            if time.monotonic() - t_start > args.timeout:
                proc.kill()
                raise SystemExit("campaign timed out")
            time.sleep(0.05)
        if proc.poll() is not None:
            finished_early = True
            print(f"kill {kill.index}: the run finished (rc {proc.returncode}) before the kill moment", flush=True)
            break
        kill.during = last_log_line(run, size_at_start)
        kill.seconds_after_start = round(time.monotonic() - t0, 1)
        tree = descendants(proc.pid)          # nnU-Net children, warm workers and their children
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kill.children = len(tree)
        # children get SIGTERM from the kernel when the driver dies (PR_SET_PDEATHSIG)
        t_kill = time.monotonic()

        def leftovers():
            found = dict(run_processes(str(run)))
            found.update({pid: cmd for pid, cmd in tree if pid in alive([pid])})
            return sorted(found.items())

        left = leftovers()
        while left and time.monotonic() - t_kill < args.grace:
            time.sleep(0.2)
            left = leftovers()
        if left:
            kill.problems.append(f"{len(left)} process(es) of the run still alive {args.grace:.0f} s after the "
                                 f"kill: {left}")
            for pid, _ in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        else:
            kill.children_gone_s = round(time.monotonic() - t_kill, 1)
        kill.problems += check_state(f"after kill {kill.index}")
        now = markers(run)
        kill.steps_done_at_kill = len(now)
        seen_markers.update({k: v for k, v in now.items() if k not in seen_markers})
        for step, folder in finished_fuse_folders(run, now).items():
            seen_sets.setdefault(step, file_digests(folder))
        problems += kill.problems
        print(f"kill {kill.index:2d}: {kill.steps_done_at_kill}/{n_steps} steps done, "
              f"{kill.seconds_after_start:.1f} s after start, {kill.children} child process(es), all gone after "
              f"{kill.children_gone_s} s; "
              f"during: {kill.during}" + (f"; PROBLEMS: {kill.problems}" if kill.problems else ""), flush=True)

    final_rc = None
    if not finished_early:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        restarts += 1
        final_rc = proc.wait(timeout=max(60.0, args.timeout - (time.monotonic() - t_start)))
    else:
        final_rc = proc.returncode
    log.close()
    if final_rc != 0:
        problems.append(f"final driver run exited with {final_rc} (see {work / 'driver_output.log'})")
    problems += check_state("at the end")
    report = run / "report.json"
    if not report.is_file():
        problems.append("no report.json at the end")
    else:
        final = json.loads(report.read_text()).get("final") or {}
        if final.get("test_dsc_mean") is None:
            problems.append("report.json has no final test score")
    if len(markers(run)) != n_steps:
        problems.append(f"{len(markers(run))} of {n_steps} steps finished at the end")
    problems += [f"temporary file left: {p}" for p in temporaries(run, nn)]
    problems += [f"at the end: {p}" for p in incomplete_images(run)]
    left = run_processes(str(run))
    if left:
        problems.append(f"processes of the run alive at the end: {left}")

    wall = time.monotonic() - t_start
    summary = {"kills": [asdict(k) for k in kills if k.seconds_after_start], "steps": n_steps,
               "driver_starts": restarts, "wall_s": round(wall, 1), "problems": problems,
               "seed": args.seed, "passed": not problems}
    (work / "kill_campaign.json").write_text(json.dumps(summary, indent=2))
    done = [k for k in kills if k.seconds_after_start]
    gone = [k.children_gone_s for k in done if k.children_gone_s is not None]
    print(f"\n{len(done)} kills, {restarts} driver starts, {wall / 60:.1f} min; children gone after "
          f"{max(gone) if gone else 0:.1f} s at most; {'PASSED' if not problems else 'FAILED'}")
    print("\n| kill | steps done | s after start | child processes | all gone after (s) | during (last run.log line) |")
    print("|---:|---:|---:|---:|---:|---|")
    for k in done:
        during = re.sub(r"^\S+ \S+ \S+ \S+: ", "", k.during).replace("|", "/")
        print(f"| {k.index} | {k.steps_done_at_kill}/{n_steps} | {k.seconds_after_start} | {k.children} | "
              f"{k.children_gone_s} | {during[:90]} |")
    for p in problems:
        print(f"PROBLEM: {p}")
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
