"""Executors without a cluster: the local backend with fake GPU ids, the SLURM backend's sbatch
rendering, requeue checkpoint and reattachment (through submitit's local executor)."""
from __future__ import annotations

import json
import re
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import submitit

from atso_nnunet.errors import InputError, StepFailedError
from atso_nnunet.execution.jobs import Job
from atso_nnunet.execution.local import LocalExecutor
from atso_nnunet.execution.options import make_executor
from atso_nnunet.execution.slurm.config import SlurmConfig
from atso_nnunet.execution.slurm.executor import SlurmExecutor
from atso_nnunet.execution.slurm.submission import render_submission
from atso_nnunet.execution.slurm import executor as slurm_mod
from atso_nnunet.execution.slurm.env import submission_env

PY = sys.executable

PROBE = textwrap.dedent("""
    import json, os, sys, time
    start = time.time()
    time.sleep(float(sys.argv[2]))
    with open(sys.argv[1], "w") as f:
        json.dump({"gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time()}, f)
""")

# Fails (exit 3) while the state file does not exist, creating it; succeeds afterwards.
FLAKY = textwrap.dedent("""
    import sys
    from pathlib import Path
    state = Path(sys.argv[1])
    if not state.exists():
        state.write_text("failed once")
        print("first attempt fails")
        sys.exit(3)
    print("second attempt succeeds", sys.argv[2:])
""")


def probe_job(tmp_path: Path, name: str, sleep: float = 1.0, uses_gpu: bool = True) -> Job:
    return Job(name=name, argv=[PY, "-c", PROBE, str(tmp_path / f"{name}.json"), str(sleep)],
               log_path=tmp_path / "logs" / f"{name}.log", uses_gpu=uses_gpu)


def read_probe(tmp_path: Path, name: str) -> dict:
    return json.loads((tmp_path / f"{name}.json").read_text())


def overlaps(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


# ---------------------------------------------------------------- local backend
def test_local_gpu_slots_concurrent_and_exclusive(tmp_path):
    environ_before = dict(os.environ)
    names = [f"job{i}" for i in range(4)]
    results = LocalExecutor(gpus=["7", "8"], poll_interval=0.05).run_batch(
        [probe_job(tmp_path, n) for n in names])
    assert [r.name for r in results] == names
    assert all(r.returncode == 0 and r.attempts == 1 for r in results)
    probes = [read_probe(tmp_path, n) for n in names]
    assert all(p["gpu"] in ("7", "8") for p in probes)  # exactly one fake id each
    for i, a in enumerate(probes):
        for b in probes[i + 1:]:
            if a["gpu"] == b["gpu"]:
                assert not overlaps(a, b), "two jobs ran on the same GPU at once"
    assert any(overlaps(a, b) for i, a in enumerate(probes) for b in probes[i + 1:]), "no concurrency"
    assert dict(os.environ) == environ_before


def test_local_jobs_per_gpu_share_each_gpu_up_to_n(tmp_path, monkeypatch):
    monkeypatch.delenv("nnUNet_n_proc_DA", raising=False)
    names = [f"job{i}" for i in range(6)]
    ex = LocalExecutor(gpus=["7", "8"], jobs_per_gpu=2, poll_interval=0.05)
    assert ex.max_parallel == 4 and ex.gpu_slots == ["7", "8", "7", "8"]
    ex.run_batch([probe_job(tmp_path, n, sleep=0.8) for n in names])
    probes = [read_probe(tmp_path, n) for n in names]
    assert {p["gpu"] for p in probes} == {"7", "8"}
    for gpu in ("7", "8"):
        mine = [p for p in probes if p["gpu"] == gpu]
        # never more than 2 at once on one GPU (counted at each start), and 2 did run together there
        for p in mine:
            assert len([q for q in mine if q["start"] <= p["start"] < q["end"]]) <= 2
        assert any(overlaps(a, b) for i, a in enumerate(mine) for b in mine[i + 1:]), f"GPU {gpu} never shared"
    for p in probes:
        assert len([q for q in probes if q["start"] <= p["start"] < q["end"]]) <= 4


def test_local_jobs_per_gpu_splits_augmentation_workers(tmp_path, monkeypatch):
    monkeypatch.delenv("nnUNet_n_proc_DA", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    shared = LocalExecutor(gpus=["0", "1"], jobs_per_gpu=2)
    job = probe_job(tmp_path, "a")
    assert shared._gpu_env(job, "1") == {"CUDA_VISIBLE_DEVICES": "1", "nnUNet_n_proc_DA": "3"}   # 16 // 4 - 1
    assert LocalExecutor(gpus=["0"])._gpu_env(job, "0") == {"CUDA_VISIBLE_DEVICES": "0"}        # nnU-Net's own choice
    own = Job(name="own", argv=["true"], log_path=tmp_path / "own.log", env={"nnUNet_n_proc_DA": "5"})
    assert "nnUNet_n_proc_DA" not in shared._gpu_env(own, "0")
    monkeypatch.setenv("nnUNet_n_proc_DA", "2")
    assert "nnUNet_n_proc_DA" not in shared._gpu_env(job, "0")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.delenv("nnUNet_n_proc_DA")
    assert shared._gpu_env(job, "0")["nnUNet_n_proc_DA"] == "1"
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="jobs_per_gpu"):
            LocalExecutor(gpus=["0"], jobs_per_gpu=bad)


def test_local_cpu_only_runs_one_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    jobs = [probe_job(tmp_path, n, sleep=0.5) for n in ("a", "b")]
    LocalExecutor(poll_interval=0.05).run_batch(jobs)
    a, b = read_probe(tmp_path, "a"), read_probe(tmp_path, "b")
    assert not overlaps(a, b)
    assert a["gpu"] == b["gpu"] == "3"  # without GPU slots the environment's visibility is left as it is


def test_local_cpu_job_needs_no_gpu_slot(tmp_path):
    jobs = [probe_job(tmp_path, "gpu", sleep=0.8), probe_job(tmp_path, "cpu", sleep=0.8, uses_gpu=False)]
    LocalExecutor(gpus=["7"], max_parallel=2, poll_interval=0.05).run_batch(jobs)
    assert overlaps(read_probe(tmp_path, "gpu"), read_probe(tmp_path, "cpu"))
    assert read_probe(tmp_path, "gpu")["gpu"] == "7"


def test_local_retry_uses_resume_argv_failure_names_log_and_sibling_completes(tmp_path):
    flaky = Job(name="flaky", argv=[PY, "-c", FLAKY, str(tmp_path / "flaky.state")],
                resume_argv=[PY, "-c", FLAKY, str(tmp_path / "flaky.state"), "--c"],
                log_path=tmp_path / "logs" / "flaky.log")
    broken = Job(name="broken", argv=[PY, "-c", "import sys; sys.exit(5)"], log_path=tmp_path / "logs" / "broken.log")
    healthy = probe_job(tmp_path, "healthy", sleep=1.0)
    with pytest.raises(StepFailedError) as info:
        LocalExecutor(gpus=["7", "8"], retries=1, poll_interval=0.05).run_batch([flaky, broken, healthy])
    message = str(info.value)
    assert "broken" in message and str(broken.log_path) in message and "exit code 5" in message
    assert "flaky" not in message and "healthy" not in message
    assert read_probe(tmp_path, "healthy")["gpu"] in ("7", "8")  # the sibling finished
    log = flaky.log_path.read_text()
    assert "=== attempt 1 ===" in log and "=== attempt 2 ===" in log
    assert "first attempt fails" in log and "second attempt succeeds ['--c']" in log
    assert broken.log_path.read_text().count("=== attempt") == 2  # retries=1: two attempts


def test_local_retry_result(tmp_path):
    flaky = Job(name="flaky", argv=[PY, "-c", FLAKY, str(tmp_path / "s")], log_path=tmp_path / "f.log",
                uses_gpu=False)
    (result,) = LocalExecutor(retries=1, poll_interval=0.05).run_batch([flaky])
    assert (result.returncode, result.attempts) == (0, 2)


def test_local_done_marker_skips(tmp_path):
    marker = tmp_path / "done.txt"
    marker.write_text("ok")
    job = Job(name="done", argv=[PY, "-c", "raise SystemExit(1)"], log_path=tmp_path / "d.log", done_marker=marker)
    (result,) = LocalExecutor(poll_interval=0.05).run_batch([job])
    assert (result.attempts, result.returncode) == (0, 0)
    assert not job.log_path.exists()


def test_local_missing_executable_fails_cleanly(tmp_path):
    job = Job(name="missing", argv=["/nonexistent/tool"], log_path=tmp_path / "m.log", uses_gpu=False)
    with pytest.raises(StepFailedError, match="exit code 127"):
        LocalExecutor(retries=0, poll_interval=0.05).run_batch([job])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_local_interrupt_terminates_children(tmp_path, sig):
    pidfile = tmp_path / "child.pid"
    # A shell that starts the suite in the background ignores SIGINT, and Python then installs no
    # KeyboardInterrupt handler: restore it, as in a terminal where Ctrl-C reaches the driver.
    driver = textwrap.dedent(f"""
        import signal, sys
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from atso_nnunet.execution.jobs import Job
        from atso_nnunet.execution.local import LocalExecutor
        child = "import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
        LocalExecutor(poll_interval=0.05, kill_grace_s=5).run_batch(
            [Job(name="long", argv=[sys.executable, "-c", child], log_path={str(tmp_path / 'l.log')!r})])
    """)
    proc = subprocess.Popen([PY, "-c", driver])
    deadline = time.time() + 20
    while not (pidfile.exists() and pidfile.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    child_pid = int(pidfile.read_text())
    proc.send_signal(sig)
    rc = proc.wait(timeout=20)
    # SIGTERM: SystemExit(143); Ctrl-C: KeyboardInterrupt re-raised (Python exits by SIGINT)
    assert rc == (143 if sig == signal.SIGTERM else -signal.SIGINT)
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)


def test_job_and_executor_validation(tmp_path):
    with pytest.raises(ValueError, match="Job.name"):
        Job(name="a/b", argv=["true"], log_path=tmp_path / "x")
    with pytest.raises(ValueError, match="Job.argv"):
        Job(name="a", argv="echo hi", log_path=tmp_path / "x")
    with pytest.raises(ValueError, match="max_parallel"):
        LocalExecutor(max_parallel=0)
    with pytest.raises(ValueError, match="retries"):
        LocalExecutor(retries=-1)
    with pytest.raises(ValueError, match="unique"):
        LocalExecutor().run_batch([Job(name="a", argv=["true"], log_path=tmp_path / "x")] * 2)


def test_make_executor(tmp_path):
    ex = make_executor("local", gpus=["0", "1"])
    assert isinstance(ex, LocalExecutor) and ex.max_parallel == 2 and ex.retries == 1
    ex = make_executor("local", gpus=["0", "1"], jobs_per_gpu=3)
    assert ex.max_parallel == 6 and ex.jobs_per_gpu == 3
    with pytest.raises(InputError, match="jobs_per_gpu.*gpus"):
        make_executor("local", jobs_per_gpu=2)
    with pytest.raises(InputError, match="jobs_per_gpu"):
        make_executor("local", gpus=["0"], jobs_per_gpu=0)
    ex = make_executor("slurm", slurm=SlurmConfig(log_folder=tmp_path, retries=2), retries=4)
    assert isinstance(ex, SlurmExecutor) and ex.config.retries == 4
    with pytest.raises(InputError, match="kind"):
        make_executor("kubernetes")
    with pytest.raises(InputError, match="slurm"):
        make_executor("slurm")


# ---------------------------------------------------------------- SLURM backend
def test_slurm_config_validation_names_option():
    for kwargs, option in [({"mem_gb": 0}, "mem_gb"), ({"gpus_per_job": -1}, "gpus_per_job"),
                           ({"time_min": 1, "signal_delay_s": 120}, "signal_delay_s"),
                           ({"extra_sbatch_lines": "module load cuda"}, "extra_sbatch_lines"),
                           ({"max_parallel": 0}, "max_parallel"), ({"retries": -1}, "retries")]:
        with pytest.raises(ValueError, match=f"SlurmConfig.{option}"):
            SlurmConfig(**kwargs)


def test_render_submission(tmp_path):
    jobs = [Job(name=f"train_{v}_{h}", argv=["nnUNetv2_train", "981", "2d", "all"], log_path=tmp_path / f"{v}{h}.log")
            for v in ("axial", "coronal", "sagittal") for h in (0, 1)]
    config = SlurmConfig(partition="gpu", gpus_per_job=1, cpus_per_task=12, mem_gb=48, time_min=600,
                         extra_sbatch_lines=["module load cuda/12.1", "source /opt/venv/bin/activate"],
                         additional_parameters={"account": "proj42"}, log_folder=tmp_path / "slurm",
                         max_parallel=3, signal_delay_s=180)
    script = render_submission(jobs, config)
    lines = script.splitlines()
    for expected in ["#SBATCH --array=0-5%3", "#SBATCH --gpus-per-node=1", "#SBATCH --partition=gpu",
                     "#SBATCH --signal=USR2@180", "#SBATCH --time=600", "#SBATCH --mem=48GB",
                     "#SBATCH --cpus-per-task=12", "#SBATCH --account=proj42",
                     "module load cuda/12.1", "source /opt/venv/bin/activate"]:
        assert expected in lines, expected
    assert lines.index("module load cuda/12.1") < next(i for i, l in enumerate(lines) if l.startswith("srun"))
    assert "submitit.core._submit" in script and str(tmp_path / "slurm") in script
    cpu_script = render_submission(jobs[:1], SlurmConfig(gpus_per_job=0, log_folder=tmp_path))
    assert "--gpus-per-node" not in cpu_script and "--array" not in cpu_script


def test_command_job_checkpoint_terminates_command_and_resumes(tmp_path):
    """Mimic submitit's USR2 handler: checkpoint() must stop the command and switch to resume_argv."""
    pidfile, out = tmp_path / "child.pid", tmp_path / "resubmitted.pkl"
    script = textwrap.dedent(f"""
        import pickle, signal, sys
        from atso_nnunet.execution.jobs import Job
        from atso_nnunet.execution.slurm.task import CommandJob
        child = "import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
        job = CommandJob(Job(name="train", argv=[sys.executable, "-c", child],
                             resume_argv=[sys.executable, "-c", child, "--c"], log_path={str(tmp_path / 't.log')!r}),
                         kill_grace_s=5)
        def handler(signum, frame):
            delayed = job.checkpoint()
            with open({str(out)!r}, "wb") as f:
                pickle.dump((delayed.function.argv, delayed.function.attempt), f)
            sys.exit(7)
        signal.signal(signal.SIGUSR2, handler)
        job()
    """)
    proc = subprocess.Popen([PY, "-c", script])
    deadline = time.time() + 20
    while not (pidfile.exists() and pidfile.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    child_pid = int(pidfile.read_text())
    os.kill(child_pid, signal.SIGUSR2)  # SLURM signals every process of the step: the command ignores it
    time.sleep(0.2)
    os.kill(child_pid, 0)  # still alive
    proc.send_signal(signal.SIGUSR2)
    assert proc.wait(timeout=20) == 7
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)
    argv, attempt = pickle.loads(out.read_bytes())
    assert argv[-1] == "--c" and attempt == 2
    assert "requeued to resume" in (tmp_path / "t.log").read_text()


def test_command_job_ignores_the_stop_signal_once_its_command_has_returned(tmp_path):
    """A signal after the command has returned (submitit still writing the result) must not requeue."""
    out = tmp_path / "calls.txt"
    script = textwrap.dedent(f"""
        import os, signal, sys
        from atso_nnunet.execution.jobs import Job
        from atso_nnunet.execution.slurm.task import CommandJob
        job = CommandJob(Job(name="predict", argv=[sys.executable, "-c", "print('ok')"], log_path={str(tmp_path / 'p.log')!r}))
        def handler(signum, frame):  # stands in for submitit's: checkpoint and requeue
            open({str(out)!r}, "a").write("requeued\\n")
            sys.exit(7)
        signal.signal(signal.SIGUSR2, handler)
        assert job() == 0
        os.kill(os.getpid(), signal.SIGUSR2)
        print("result written")
    """)
    res = subprocess.run([PY, "-c", script], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "result written" in res.stdout, res.stderr
    assert not out.exists()
    assert "its command has returned): not requeued" in (tmp_path / "p.log").read_text()


# Writes the done marker, then runs until the task's signal handler has written to the log (the
# command's own stdout) what it did with the stop signal; exit 0.
FINISHED_EARLY = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    Path(sys.argv[1]).write_text("done")
    print("work done", flush=True)
    log, deadline = Path(sys.argv[2]), time.time() + 60
    while time.time() < deadline and not any(line.startswith("=== stop signal") for line in log.open()):
        time.sleep(0.1)
""")


def test_slurm_local_task_signalled_after_its_work_is_done_ends_done_not_requeued(tmp_path):
    """submitit's time-limit signal (here from its local executor, ``time - signal_delay`` = 10 s
    after the start) reaches a task whose done marker exists: no requeue, one attempt, success."""
    marker, log = tmp_path / "checkpoint_final.pth", tmp_path / "logs" / "train.log"
    job = Job(name="train", argv=[PY, "-c", FINISHED_EARLY, str(marker), str(log)],
              resume_argv=[PY, "-c", "print('resumed')"], log_path=log, done_marker=marker)
    config = SlurmConfig(log_folder=tmp_path / "slurm", poll_interval_s=0.2, time_min=1, signal_delay_s=50)
    t0 = time.monotonic()
    (result,) = SlurmExecutor(config, cluster="local").run_batch([job], batch="b")
    text = log.read_text()
    assert (result.returncode, result.attempts) == (0, 1), text
    assert f"{marker} exists): not requeued" in text and "work done" in text
    assert "requeued to resume" not in text and "resumed" not in text and "=== attempt 2" not in text
    assert time.monotonic() - t0 < 50


def test_command_job_pickles_without_process(tmp_path):
    job = slurm_mod.CommandJob(Job(name="a", argv=["true"], log_path=tmp_path / "a.log"))
    job._proc = subprocess.Popen(["true"])
    job._proc.wait()
    clone = pickle.loads(pickle.dumps(job))
    assert clone._proc is None and clone.argv == ["true"]


def _local_slurm(tmp_path: Path, **kwargs) -> SlurmExecutor:
    config = SlurmConfig(log_folder=tmp_path / "slurm", poll_interval_s=0.2, time_min=5, signal_delay_s=30, **kwargs)
    return SlurmExecutor(config, cluster="local")


def test_slurm_local_cluster_runs_retries_and_skips(tmp_path):
    marker = tmp_path / "marker"
    marker.write_text("done")
    ok = Job(name="ok", argv=[PY, "-c", "print('fine')"], log_path=tmp_path / "ok.log")
    flaky = Job(name="flaky", argv=[PY, "-c", FLAKY, str(tmp_path / "s")],
                resume_argv=[PY, "-c", FLAKY, str(tmp_path / "s"), "--c"], log_path=tmp_path / "flaky.log")
    done = Job(name="done", argv=[PY, "-c", "raise SystemExit(1)"], log_path=tmp_path / "d.log", done_marker=marker)
    results = _local_slurm(tmp_path, retries=1).run_batch([ok, flaky, done], batch="b1")
    assert [(r.returncode, r.attempts) for r in results] == [(0, 1), (0, 2), (0, 0)]
    assert "second attempt succeeds ['--c']" in flaky.log_path.read_text()
    state = json.loads((tmp_path / "slurm" / "b1" / "jobs.json").read_text())
    assert set(state["jobs"]) == {"ok", "flaky"} and state["jobs"]["flaky"]["attempt"] == 2


def test_slurm_local_cluster_failure_raises_after_siblings(tmp_path):
    broken = Job(name="broken", argv=[PY, "-c", "import sys; sys.exit(9)"], log_path=tmp_path / "b.log")
    ok = Job(name="ok", argv=[PY, "-c", "import time; time.sleep(0.5)"], log_path=tmp_path / "ok.log")
    with pytest.raises(StepFailedError) as info:
        _local_slurm(tmp_path, retries=0).run_batch([broken, ok], batch="b2")
    assert "broken" in str(info.value) and str(broken.log_path) in str(info.value)
    assert "exit code 9" in str(info.value) and "ok:" not in str(info.value)
    assert ok.log_path.read_text().startswith("=== attempt 1 ===")


def test_slurm_reattach_to_running_job_and_resubmit_vanished(tmp_path):
    """A first driver submits and dies; a second one reattaches instead of resubmitting."""
    config = dict(log_folder=str(tmp_path / "slurm"), poll_interval_s=0.2, time_min=5, signal_delay_s=30)
    long_job = dict(name="long", argv=[PY, "-c", "import time; time.sleep(2); print('long done')"],
                    log_path=str(tmp_path / "long.log"))
    driver = textwrap.dedent(f"""
        from atso_nnunet.execution.jobs import Job
        from atso_nnunet.execution.slurm.config import SlurmConfig
        from atso_nnunet.execution.slurm.executor import SlurmExecutor
        SlurmExecutor(SlurmConfig(**{config!r}), cluster="local").run_batch([Job(**{long_job!r})], batch="b3")
    """)
    state_path = tmp_path / "slurm" / "b3" / "jobs.json"
    first = subprocess.Popen([PY, "-c", driver])
    deadline = time.time() + 20
    while not state_path.exists() and time.time() < deadline:
        time.sleep(0.05)
    first.kill()
    first.wait()
    first_id = json.loads(state_path.read_text())["jobs"]["long"]["job_id"]

    # A second job whose recorded id no longer exists (vanished): resubmitted, with resume_argv.
    vanished = Job(name="gone", argv=[PY, "-c", "print('argv')"], resume_argv=[PY, "-c", "print('resumed')"],
                   log_path=tmp_path / "gone.log")
    state = json.loads(state_path.read_text())
    state["jobs"]["gone"] = {"job_id": "999999999", "attempt": 1}
    state_path.write_text(json.dumps(state))

    results = SlurmExecutor(SlurmConfig(**config), cluster="local").run_batch(
        [Job(**long_job), vanished], batch="b3")
    assert [r.returncode for r in results] == [0, 0]
    final = json.loads(state_path.read_text())["jobs"]
    assert final["long"]["job_id"] == first_id  # reattached, not resubmitted
    assert Path(long_job["log_path"]).read_text().count("=== attempt") == 1
    assert final["gone"]["attempt"] == 2 and final["gone"]["job_id"] != "999999999"
    assert re.search(r"=== attempt 2 ===\n(=== .* ===\n)*resumed", vanished.log_path.read_text())


@pytest.mark.parametrize("squeue_out,sacct_out,expected", [
    ("1234_0|RUNNING|n", None, "running"), ("1234_0|PENDING|n", None, "running"),
    ("1234_0|REQUEUED|n", None, "running"), ("1234_0|COMPLETING|n", None, "running"),
    ("", None, "vanished"),                          # no accounting, the controller forgot it
    ("", "1234_0|CANCELLED by 0\n", "failed"),        # accounting knows how it ended
    ("1234_0|CANCELLED|n", None, "failed"), ("1234_0|OUT_OF_MEMORY|n", None, "failed"),
    (RuntimeError, None, "running"),                  # squeue failed: nothing is concluded
])
def test_slurm_status_from_the_cluster(tmp_path, monkeypatch, squeue_out, sacct_out, expected):
    """The SLURM path of state tracking, with squeue / sacct replaced by fake answers."""
    def fake_run(argv, timeout=60):
        if argv[0] == "squeue":
            if squeue_out is RuntimeError:
                raise slurm_mod.slurm_cluster.ClusterQueryError("controller down")
            return 0, squeue_out, ""
        return (1, "", "Slurm accounting storage is disabled") if sacct_out is None else (0, sacct_out, "")

    monkeypatch.setattr(slurm_mod.slurm_cluster, "_run", fake_run)
    monkeypatch.setattr(slurm_mod, "_RESULT_WAIT_S", 0.0)
    ex = SlurmExecutor(SlurmConfig(log_folder=tmp_path))
    handle = ex._handle(tmp_path / "b", "1234_0")
    handle.paths.folder.mkdir(parents=True)
    job = Job(name="j", argv=["true"], log_path=tmp_path / "j.log")
    tracked = slurm_mod._Tracked(job, handle, 1, 0, time.monotonic(), reattached=True)
    ex._refresh_states([handle])
    assert ex._status(tracked)[0] == expected


def _slurm_job_that_failed(tmp_path, returncode):
    """A SLURM executor tracking task 77_1, whose result file says its command exited with ``returncode``."""
    ex = SlurmExecutor(SlurmConfig(log_folder=tmp_path))
    handle = ex._handle(tmp_path / "b", "77_1")
    handle.paths.folder.mkdir(parents=True)
    tracked = slurm_mod._Tracked(Job(name="j", argv=["true"], log_path=tmp_path / "j.log"), handle, 1, 0, 0.0)
    submitit.core.utils.cloudpickle_dump(("error", "Traceback\nCommandFailedError: job j: command exited with "
                                                   f"code {returncode}; log: x"), handle.paths.result_pickle)
    return ex, handle, tracked


def test_slurm_result_file_decides_once_the_job_ended(tmp_path, monkeypatch):
    monkeypatch.setattr(slurm_mod.slurm_cluster, "_run", lambda argv, timeout=60: (0, "", ""))
    ex, handle, tracked = _slurm_job_that_failed(tmp_path, returncode=3)
    ex._refresh_states([handle])
    status, info = ex._status(tracked)
    assert status == "failed" and slurm_mod._returncode(info) == 3
    submitit.core.utils.cloudpickle_dump(("success", 0), handle.paths.result_pickle)
    assert ex._status(tracked) == ("succeeded", "")


def test_slurm_failure_names_the_state_the_cluster_ended_the_job_in(tmp_path, monkeypatch):
    """A command killed by ``scancel`` exits -15 and its task writes the result file before the
    controller records CANCELLED: the failure waits for the cluster and says CANCELLED."""
    answers = iter(["77_1|RUNNING|n", "77_1|COMPLETING|n", "77_1|CANCELLED|n"])
    monkeypatch.setattr(slurm_mod.slurm_cluster, "_run", lambda argv, timeout=60: (0, next(answers), ""))
    monkeypatch.setattr(slurm_mod.time, "sleep", lambda s: None)
    ex, handle, tracked = _slurm_job_that_failed(tmp_path, returncode=-15)
    ex._refresh_states([handle])  # RUNNING: the result file came first
    status, info = ex._status(tracked)
    assert status == "failed" and info.endswith("; SLURM state CANCELLED") and slurm_mod._returncode(info) == -15
    assert next(answers, None) is None  # asked until the job left COMPLETING


def test_command_job_carries_only_the_run_variables(tmp_path, monkeypatch):
    """Job.env and the executor's resource variables travel; the node's own environment is kept."""
    job = Job(name="env", argv=[PY, "-c", "import os, json; print(json.dumps(dict(os.environ)))"],
              env={"nnUNet_raw": "/r", "nnUNet_n_proc_DA": "0"}, log_path=tmp_path / "env.log")
    cj = slurm_mod.CommandJob(job, extra_env={"nnUNet_n_proc_DA": "3"})
    assert cj.env == {"nnUNet_raw": "/r", "nnUNet_n_proc_DA": "3"}
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "41")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    cj()
    text = job.log_path.read_text()
    assert "=== SLURM job 41_1 (job id 42)" in text and "CUDA_VISIBLE_DEVICES=5" in text
    child = json.loads(text.splitlines()[-1])
    assert child["SLURM_JOB_ID"] == "42" and child["CUDA_VISIBLE_DEVICES"] == "5" and child["nnUNet_raw"] == "/r"


def test_submission_env_drops_the_drivers_allocation():
    base = {"PATH": "/bin", "SLURM_JOB_ID": "7", "SLURM_CONF": "/etc/x.conf", "CUDA_VISIBLE_DEVICES": "0",
            "SBATCH_ACCOUNT": "p42", "nnUNet_raw": "/r"}
    assert submission_env(base) == {"PATH": "/bin", "SLURM_CONF": "/etc/x.conf",
                                              "SBATCH_ACCOUNT": "p42", "nnUNet_raw": "/r"}


def test_slurm_job_names_and_data_loader_workers(tmp_path, monkeypatch):
    ex = SlurmExecutor(SlurmConfig(log_folder=tmp_path, job_name_prefix="atso:run1", cpus_per_task=4))
    assert ex.job_name(Job(name="g1__train__h1__axial", argv=["true"], log_path=tmp_path / "l")) == \
        "atso:run1:g1/train/h1/axial"
    monkeypatch.delenv("nnUNet_n_proc_DA", raising=False)
    assert ex.resource_env() == {"nnUNet_n_proc_DA": "3"}
    assert slurm_mod.data_loader_workers(1) == 0
    monkeypatch.setenv("nnUNet_n_proc_DA", "6")  # the user's own choice wins
    assert ex.resource_env() == {}


def test_slurm_live_task_of_a_step_is_adopted_not_submitted_again(tmp_path, monkeypatch):
    """A task of the step still queued under its name (e.g. submitted just before the driver was
    killed, before jobs.json was written) is adopted: no second job for the same step."""
    config = SlurmConfig(log_folder=tmp_path / "slurm", job_name_prefix="atso:r", poll_interval_s=0.01)
    ex = SlurmExecutor(config)
    folder = tmp_path / "slurm" / "b" / "submitit"
    folder.mkdir(parents=True)

    def fake_run(argv, timeout=60):
        if argv[0] == "squeue" and any(a.startswith("--name=") for a in argv):
            return 0, "31_0|PENDING|atso:r:g1/train/h1/axial\n", ""
        if argv[:3] == ["scontrol", "show", "job"]:
            return 0, f"JobId=32 ArrayJobId=31 StdOut={folder}/31_0_0_log.out", ""
        raise AssertionError(f"unexpected command {argv}")

    monkeypatch.setattr(slurm_mod.slurm_cluster, "_run", fake_run)
    monkeypatch.setattr(ex, "_make_executor", lambda batch: pytest.fail("submitted a second job"))
    job = Job(name="g1__train__h1__axial", argv=["true"], log_path=tmp_path / "logs" / "axial.log")
    tracked, state = {}, {}
    ex._submit("b", [(job, 1, 1)], tracked, state, tmp_path / "slurm" / "b" / "jobs.json")
    assert tracked[job.name].handle.job_id == "31_0" and state[job.name]["job_id"] == "31_0"
    assert (tmp_path / "logs" / "axial.slurm-31_0.out").is_symlink()
