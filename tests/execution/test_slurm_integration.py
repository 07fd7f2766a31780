"""The SLURM executor against a real cluster (``make test-slurm``; ``scripts/slurm_cluster.sh up``).

Runs the real driver (``atso_nnunet_run --executor slurm``) on a tiny one-view plan, on a CPU
partition, and counts from the cluster itself (``squeue`` sampled every half second,
``scontrol show job``) how many jobs each step had and whether two ever ran at once. Written
for a cluster without accounting (``sacct`` fails); with accounting the same must hold.

Selected only with ``pytest --slurm -m slurm_cluster``: the default suite never runs it.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Set

import pytest

from helpers import offline_wandb_env, offline_wandb_runs, write_tiny_dataset

pytestmark = pytest.mark.slurm_cluster

POLL_S = "2"
# Ended jobs stay in squeue for MinJobAge (300 s): run names unique to this session keep an earlier
# session's jobs out of the counts.
TAG = f"{os.getpid() % 100000}"
# The tasks run below the other work of a shared machine (the batch script renices itself).
NICE = "renice -n 10 -p $$ >/dev/null"
TINY_TRAINING = {"num_epochs": 1, "num_iterations_per_epoch": 2, "num_val_iterations_per_epoch": 1,
                 "final_validation": False, "test_time_augmentation": False}


def _sh(*argv: str, check: bool = True) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60).stdout


@pytest.fixture(scope="session")
def cluster() -> Dict[str, object]:
    """The cluster answers (else the suite fails: it was asked for); whether accounting works."""
    try:
        out = _sh("sinfo", "--noheader", "--format=%P|%a|%c")
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.fail(f"no SLURM cluster answers sinfo ({e}); start one: scripts/slurm_cluster.sh up")
    accounting = subprocess.run(["sacct", "--noheader", "-X", "--starttime=now"], capture_output=True).returncode == 0
    return {"sinfo": out, "accounting": accounting}


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> Path:
    """A tiny source dataset and nnU-Net folders shared by every run (preprocessed once)."""
    root = tmp_path_factory.mktemp("slurm_suite")
    write_tiny_dataset(root / "nn" / "nnUNet_raw", dataset_id=990, name="Tiny", n_labeled=9, n_reference=0,
                       n_test=0)
    return root


def _plan(root: Path, name: str, **over) -> Path:
    plan = {
        "name": "tiny", "sources": ["Dataset990_Tiny"], "dataset_id": 991, "dataset_name": "TinyExp",
        "labeled": ["tiny_000", "tiny_001", "tiny_002"], "reference": ["tiny_003", "tiny_004", "tiny_005", "tiny_006"],
        "test": ["tiny_007", "tiny_008"], "method": "atso", "generations": 1, "views": ["axial"],
        "network": {"batch_size": 2, "max_features": 16, "n_stages": 3}, "training": dict(TINY_TRAINING),
        # the full ATSO schedule (subset models every generation, one fold swap more): with the
        # like-for-like defaults one generation would train no subset model, and these tests
        # watch the subset models' job array
        "method_options": {"atso": {"test_model": "ensemble", "final_labels": "last"}},
    }
    plan.update(over)
    path = root / f"{name}.plan.json"
    path.write_text(json.dumps(plan))
    return path


def _driver(root: Path, plan: Path, run: str, *extra: str) -> List[str]:
    return [sys.executable, "-m", "atso_nnunet.cli.run", "--plan", str(plan), "--nnunet-dir", str(root / "nn"),
            "--run-dir", str(root / run), "--num-processes", "1", "--executor", "slurm", "--device", "cpu",
            "--slurm-cpus", "1", "--slurm-mem-gb", "2", "--slurm-poll-s", POLL_S, "--slurm-setup", NICE, *extra]


def _env() -> Dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "nnUNet_n_proc_DA" and not k.startswith("ATSO_")}


class QueueWatch:
    """Samples ``squeue --states=all`` every half second: which job ids each name had, and the
    largest number of active jobs one name ever had at the same time."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.ids: Dict[str, Set[str]] = defaultdict(set)
        self.arrays: Set[str] = set()
        self.max_active: Dict[str, int] = defaultdict(int)
        self.states: Dict[str, Set[str]] = defaultdict(set)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "QueueWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(0.5)

    def sample(self) -> None:
        out = subprocess.run(["squeue", "--array", "--noheader", "--states=all", "--format=%i|%A|%j|%T"],
                             capture_output=True, text=True).stdout
        active: Dict[str, int] = defaultdict(int)
        for line in out.splitlines():
            task, raw, name, state = line.split("|", 3)
            if not name.startswith(self.prefix):
                continue
            self.arrays.add(task.split("_")[0])
            self.ids[name].add(task)
            self.states[task].add(state)
            if state in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "SUSPENDED"):
                active[name] += 1
        for name, n in active.items():
            self.max_active[name] = max(self.max_active[name], n)

    def step_names(self) -> Dict[str, Set[str]]:
        """Job ids per step name (the array's own name, before the tasks are renamed, left out)."""
        return {n: ids for n, ids in self.ids.items() if "/" in n}

    def running(self, name_suffix: str) -> List[str]:
        out = subprocess.run(["squeue", "--array", "--noheader", "--states=RUNNING", "--format=%i|%j"],
                             capture_output=True, text=True).stdout
        return [line.split("|")[0] for line in out.splitlines()
                if line.split("|", 1)[1].startswith(self.prefix) and line.endswith(name_suffix)]

    def wait_running(self, name_suffix: str, timeout: float = 600, proc=None) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.running(name_suffix)
            if found:
                return found[0]
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"driver ended (exit {proc.returncode}) before {name_suffix} ran")
            time.sleep(0.5)
        raise AssertionError(f"no running task {self.prefix}*{name_suffix} after {timeout} s")


def _scontrol(job_id: str) -> Dict[str, str]:
    out = _sh("scontrol", "show", "job", "--oneliner", job_id, check=False)
    return dict(re.findall(r"(\w+)=(\S*)", out))


def sacct_ids(prefix: str) -> Dict[str, Set[str]]:
    """Job ids per step name from the accounting database (every job, however short-lived)."""
    out = _sh("sacct", "--allocations", "--noheader", "--parsable2", "--starttime=now-3hours",
              "--format=JobID,JobName")
    ids: Dict[str, Set[str]] = defaultdict(set)
    for line in out.splitlines():
        job_id, _, name = line.partition("|")
        if name.startswith(prefix) and "/" in name:
            ids[name].add(job_id)
    return dict(ids)


def _check_accounting(cluster, watch: QueueWatch) -> None:
    """With accounting, sacct must list the same jobs per step as squeue showed."""
    if cluster["accounting"]:
        assert sacct_ids(watch.prefix) == watch.step_names()


def _assert_one_job_per_step(watch: QueueWatch, steps: List[str]) -> Dict[str, str]:
    names = watch.step_names()
    for step in steps:
        assert f"{watch.prefix}{step}" in names, f"no job named {watch.prefix}{step}: {sorted(names)}"
    bad = {n: sorted(ids) for n, ids in names.items() if len(ids) != 1}
    assert not bad, f"steps with more than one SLURM job: {bad}"
    # per step name: an array's own name covers all its tasks until they are renamed, so it is no step
    steps_active = {n: k for n, k in watch.max_active.items() if "/" in n}
    assert all(k <= 1 for k in steps_active.values()), steps_active
    return {n: next(iter(ids)) for n, ids in names.items()}


def _log_sections(log: Path) -> List[str]:
    return re.split(r"(?m)^(?==== attempt )", log.read_text())[1:]


def test_full_run_through_job_arrays_with_the_driver_killed_and_restarted(cluster, shared):
    """A tiny ATSO run through sbatch job arrays; the driver is SIGKILLed while the array of the two
    half-model trainings runs and started again: it reattaches, nothing is submitted twice."""
    plan = _plan(shared, "full")
    cmd = _driver(shared, plan, f"full-{TAG}", "--slurm-time-min", "15")
    run = shared / f"full-{TAG}"
    # nnU-Net's W&B logging, offline, where wandb is installed (the test extra installs it): the
    # driver's environment must reach every SLURM task, and each W&B run carry its step's name
    wandb = _has_wandb()
    env = offline_wandb_env(_env(), shared / "wandb_home", "atso-slurm", "full") if wandb else _env()
    t0 = time.time()
    with QueueWatch(f"atso:full-{TAG}:") as watch:
        with open(shared / "full.driver1.log", "w") as out:
            first = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            task = watch.wait_running(":g1/train/g1_h1/axial", proc=first)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        killed_at = time.time() - t0
        assert _scontrol(task).get("JobState") in ("RUNNING", "COMPLETING", "COMPLETED")  # the cluster job lives on
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    wall = time.time() - t0
    assert second.returncode == 0, second.stderr[-4000:]
    # the second driver takes over the killed driver's task (reattached while it runs, or counted as
    # done if it finished in between) instead of submitting it again (QueueWatch checks the queue)
    assert re.search(rf"SLURM job {re.escape(task)}\b", second.stderr), second.stderr[-4000:]

    report = json.loads((run / "report.json").read_text())
    assert [g["generation"] for g in report["generations"]] == [0, 1]
    assert report["final"]["test_dsc_mean"] is not None
    # the layout of a local run: models, pseudo-labels, markers, logs
    for model in ("M0", "g1_h1", "g1_h2", "final"):
        assert list((run / "models" / model).rglob("fold_all/checkpoint_final.pth")), model
    assert len(list((run / "pseudolabels" / "R_g1").glob("*.nii.gz"))) == 4
    assert (run / "report.md").is_file() and (run / "report.csv").is_file()

    steps = ["g0/train/M0/axial", "M0/axial/predict_ER", "g1/train/g1_h1/axial", "g1/train/g1_h2/axial",
             "g1_h1/axial/predict_ER", "g1_h2/axial/predict_ER", "final/train/final/axial", "final/axial/predict_E"]
    ids = _assert_one_job_per_step(watch, steps)
    _check_accounting(cluster, watch)
    # one array per batch of nnU-Net jobs (6 batches), none submitted again by the second driver
    assert len(watch.arrays) == 6, sorted(watch.arrays)
    assert len(ids) == len(steps)
    # per-task logs next to the step logs; each attempt names its SLURM task
    for log in (run / "logs").rglob("*.log"):
        if "train" in log.parts or "predict" in log.parts:
            links = list(log.parent.glob(f"{log.stem}.slurm-*.out"))
            assert links and all(p.resolve().is_file() for p in links), log
            assert "=== SLURM job " in log.read_text()
    if wandb:
        assert sorted(offline_wandb_runs(run)) == sorted(s for s in steps if "/train/" in s)
    print(f"\nfull run: {wall:.0f} s (driver killed at {killed_at:.0f} s); arrays {sorted(watch.arrays)}; "
          f"jobs per step: { {n: sorted(v) for n, v in watch.step_names().items()} }")


def test_time_out_requeue_and_continue(cluster, shared):
    """A training longer than its time limit: USR2 before the limit, requeued by submitit, continued
    with --c from its checkpoint, one SLURM job for the step throughout, never two at once.

    The training is submitted with a 2 min limit and needs more than one such attempt on any
    machine (250 epochs, a checkpoint after each: about 0.8 s an epoch on an idle 2-core box, so
    over 3 minutes; 30 epochs finished inside the limit there). Once it has been requeued, the test
    raises the job's limit (``scontrol update``, as an administrator can) so that a slow machine
    finishes in the next attempt instead of many more.
    """
    training = dict(TINY_TRAINING, num_epochs=250, num_iterations_per_epoch=5, save_every=1)
    plan = _plan(shared, "timeout", method="supervised", generations=0, training=training)
    cmd = _driver(shared, plan, f"timeout-{TAG}", "--slurm-time-min", "2", "--slurm-signal-delay-s", "20",
                  "--slurm-max-requeues", "4")
    t0 = time.time()
    with QueueWatch(f"atso:timeout-{TAG}:") as watch:
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        task = watch.wait_running(":g0/train/M0/axial", proc=proc)
        raised = None
        while proc.poll() is None and raised is None:
            info = _scontrol(task)
            if int(info.get("Restarts", "0")) >= 1:  # requeued (pending, or already running again)
                _sh("scontrol", "update", f"JobId={task}", "TimeLimit=30")
                raised = time.time() - t0
            time.sleep(1)
        out, _ = proc.communicate(timeout=1500)
    wall = time.time() - t0
    assert proc.returncode == 0, out[-4000:]
    assert raised is not None, "the training was never requeued"
    ids = _assert_one_job_per_step(watch, ["g0/train/M0/axial"])
    _check_accounting(cluster, watch)
    assert ids[f"atso:timeout-{TAG}:g0/train/M0/axial"] == task
    info = _scontrol(task)
    restarts = int(info.get("Restarts", "0"))
    assert restarts >= 1, info
    sections = _log_sections(shared / f"timeout-{TAG}" / "logs" / "g0" / "train" / "M0" / "axial.log")
    assert len(sections) == restarts + 1
    assert all("requeued to resume" in s for s in sections[:-1])
    commands = [next(line for line in s.splitlines() if line.startswith("=== command: ")) for s in sections]
    assert "--c" not in commands[0] and all(c.endswith(" --c ===") for c in commands[1:])
    assert not any("Cannot continue training" in s for s in sections[1:])  # a checkpoint was there to continue
    assert "PENDING" in watch.states[task] and "RUNNING" in watch.states[task]
    print(f"\ntime-out run: {wall:.0f} s, SLURM job {task}: {restarts} requeue(s) (limit raised at {raised:.0f} s), "
          f"states seen {sorted(watch.states[task])}")


# A stand-in for a training that has written its final checkpoint and is still exiting: writes the
# done marker, then runs until the task has written what it did with the stop signal (a line of the
# job's log, which is also the command's stdout), then a few seconds more; exit 0. Without the line
# (the task requeued instead and killed it) it would give up after 100 s.
FINISHED_TRAINING = """
import sys, time
from pathlib import Path
Path(sys.argv[1]).write_text("final")
print("Training done.", flush=True)
log, deadline = Path(sys.argv[2]), time.time() + 100
while time.time() < deadline and not any(line.startswith("=== stop signal") for line in log.open()):
    time.sleep(0.2)
time.sleep(3)
"""


def test_task_signalled_after_its_training_is_done_ends_done_not_requeued(cluster, shared):
    """The race of a training signalled for its time limit just after nnU-Net wrote its final
    checkpoint: the task ignores the signal, lets the command finish and ends COMPLETED, with no
    requeue (which would hold it pending for about 2 minutes, then find nothing to do).

    The signal is the one SLURM sends at ``--signal=USR2@<delay>``, sent with ``scancel --signal``
    (as submitit's own time-out test does) once the done marker exists, so the timing is exact.
    """
    from atso_nnunet.execution.jobs import Job
    from atso_nnunet.execution.slurm.config import SlurmConfig
    from atso_nnunet.execution.slurm.executor import SlurmExecutor

    root = shared / f"early-{TAG}"
    marker, log = root / "fold_all" / "checkpoint_final.pth", root / "logs" / "g0" / "train" / "M0" / "axial.log"
    marker.parent.mkdir(parents=True)
    job = Job(name="g0__train__M0__axial", argv=[sys.executable, "-c", FINISHED_TRAINING, str(marker), str(log)],
              resume_argv=[sys.executable, "-c", "print('resumed: nothing to do')"], log_path=log,
              done_marker=marker, uses_gpu=False)
    config = SlurmConfig(log_folder=root / "slurm", job_name_prefix=f"atso:early-{TAG}", time_min=10,
                         cpus_per_task=1, mem_gb=1, gpus_per_job=0, poll_interval_s=1.0,
                         extra_sbatch_lines=[NICE])
    outcome: Dict[str, object] = {}

    def run() -> None:
        try:
            outcome["results"] = SlurmExecutor(config).run_batch([job])
        except BaseException as e:  # noqa: BLE001 - reported by the test's own thread
            outcome["error"] = e
        outcome["ended"] = time.time()

    with QueueWatch(f"atso:early-{TAG}:") as watch:
        driver = threading.Thread(target=run, daemon=True)
        driver.start()
        task = watch.wait_running(":g0/train/M0/axial", timeout=300)
        deadline = time.time() + 120
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.2)
        assert marker.exists(), log.read_text() if log.exists() else "no log"
        _sh("scancel", "--signal=USR2", task)
        signalled = time.time()
        driver.join(timeout=240)
    assert not driver.is_alive(), f"the executor still waits 240 s after the signal; {_scontrol(task)}"
    assert "error" not in outcome, outcome.get("error")
    (result,) = outcome["results"]
    waited = outcome["ended"] - signalled
    info = _scontrol(task)
    text = log.read_text()
    assert (result.returncode, result.attempts) == (0, 1), text
    assert info.get("Restarts") == "0" and info.get("JobState") == "COMPLETED", info
    assert f"{marker} exists): not requeued" in text
    assert "requeued to resume" not in text and "resumed" not in text and len(_log_sections(log)) == 1
    assert watch.step_names() == {f"atso:early-{TAG}:g0/train/M0/axial": {task}}
    assert waited < 60, f"the executor returned {waited:.0f} s after the signal"
    print(f"\ntask {task} signalled after its work was done: COMPLETED, 0 restarts; "
          f"the executor returned {waited:.0f} s after the signal")


def _has_wandb() -> bool:
    import importlib.util

    return importlib.util.find_spec("wandb") is not None


def test_cancelled_task_is_retried(cluster, shared):
    plan = _plan(shared, "cancel", method="supervised", generations=0)
    cmd = _driver(shared, plan, f"cancel-{TAG}", "--slurm-time-min", "10", "--retries", "1", "--step", "g0/train/M0/axial")
    with QueueWatch(f"atso:cancel-{TAG}:") as watch:
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        task = watch.wait_running(":g0/train/M0/axial", proc=proc)
        _sh("scancel", task)
        out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    assert "resubmitting (1 of 1)" in out
    ids = watch.step_names()[f"atso:cancel-{TAG}:g0/train/M0/axial"]
    assert len(ids) == 2 and task in ids  # the cancelled job and its one retry
    assert watch.max_active[f"atso:cancel-{TAG}:g0/train/M0/axial"] == 1  # never both at once
    _check_accounting(cluster, watch)
    assert list((shared / f"cancel-{TAG}" / "models" / "M0").rglob("checkpoint_final.pth"))


def test_cancelled_task_without_retries_left_stops_with_the_step_and_its_log(cluster, shared):
    plan = _plan(shared, "exhausted", method="supervised", generations=0)
    cmd = _driver(shared, plan, f"exhausted-{TAG}", "--slurm-time-min", "10", "--retries", "0",
                  "--step", "g0/train/M0/axial")
    with QueueWatch(f"atso:exhausted-{TAG}:") as watch:
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        task = watch.wait_running(":g0/train/M0/axial", proc=proc)
        _sh("scancel", task)
        out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0
    log = shared / f"exhausted-{TAG}" / "logs" / "g0" / "train" / "M0" / "axial.log"
    assert "step g0/train/M0/axial" in out and str(log) in out and "CANCELLED" in out, out[-3000:]
    assert watch.step_names()[f"atso:exhausted-{TAG}:g0/train/M0/axial"] == {task}
    _check_accounting(cluster, watch)


def test_driver_as_a_slurm_job_gives_children_their_own_allocation(cluster, shared):
    """``sbatch --wrap <driver>``, as teams do: the training task sees its own SLURM_* and no
    CUDA_VISIBLE_DEVICES of the driver's job."""
    plan = _plan(shared, "asjob", method="supervised", generations=0)
    cmd = _driver(shared, plan, f"asjob-{TAG}", "--slurm-time-min", "10", "--step", "g0/train/M0/axial")
    out = shared / "asjob.driver.out"
    env = dict(_env(), CUDA_VISIBLE_DEVICES="7")  # what a GPU driver job would hold
    submitted = subprocess.run(["sbatch", "--parsable", "--job-name=atso-driver", "-c", "1", "--mem=3G",
                                "--time=20", f"--output={out}", "--wrap", " ".join(map(_quote, cmd))],
                               env=env, capture_output=True, text=True, check=True)
    driver_id = submitted.stdout.strip().split(";")[0]
    deadline = time.time() + 900
    while time.time() < deadline:
        state = _scontrol(driver_id).get("JobState")
        if state not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING"):
            break
        time.sleep(2)
    info = _scontrol(driver_id)
    assert info.get("JobState") == "COMPLETED" and info.get("ExitCode") == "0:0", (info, out.read_text()[-3000:])
    header = next(line for line in (shared / f"asjob-{TAG}" / "logs" / "g0" / "train" / "M0" / "axial.log")
                  .read_text().splitlines() if line.startswith("=== SLURM job "))
    child_id = re.search(r"job id (\d+)", header).group(1)
    assert child_id != driver_id
    assert "CUDA_VISIBLE_DEVICES=(unset)" in header, header


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
