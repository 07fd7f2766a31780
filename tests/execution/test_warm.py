"""Warm workers: a job forked from a warm worker runs as the same command in a fresh subprocess would.

The probe entry point (tests/warm_probe.py) stands in for nnU-Net's console entry points and
reports what the job's process sees; each trap named in the design is checked against a plain
subprocess running the same argument list.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

from atso_nnunet.errors import StepFailedError
from atso_nnunet.execution.jobs import Job
from atso_nnunet.execution.local import LocalExecutor
from atso_nnunet.execution.options import make_executor
from atso_nnunet.execution.warm.pool import WarmPool, console_entry_points, entry_point_for, warm_workers_enabled
from atso_nnunet.execution.warm.worker import refresh_import_time_settings
from atso_nnunet.nnunet.commands import console_script

TESTS = Path(__file__).resolve().parents[1]  # warm_probe.py lives there
LIGHT_PRELOAD = ("nnunetv2.configuration", "nnunetv2.utilities.file_path_utilities", "warm_probe")
SCRIPT = "nnUNetv2_probe"


@pytest.fixture
def probe_env(tmp_path, monkeypatch):
    """A console script ``bin/nnUNetv2_probe`` (-> warm_probe:main) and a pool factory for it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / SCRIPT
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom warm_probe import main\n"
                      "if __name__ == '__main__':\n    sys.exit(main())\n")
    script.chmod(0o755)
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    pools = []

    def make_pool(size=1, preload=LIGHT_PRELOAD, threads=None):
        pool = WarmPool(size, preload=preload, scripts={SCRIPT: "warm_probe:main"}, threads=threads,
                        scripts_dir=bin_dir, log_dir=tmp_path / "worker_logs")
        pools.append(pool)
        return pool

    yield types.SimpleNamespace(script=str(script), make_pool=make_pool, tmp=tmp_path)
    for pool in pools:
        pool.close()


def _job(env, name, *args, extra_env=None, cwd=None):
    return Job(name=name, argv=[env.script, *args], log_path=env.tmp / "logs" / f"{name}.log",
               env={"PYTHONPATH": str(TESTS), **(extra_env or {})}, cwd=cwd, uses_gpu=False)


def _start(pool, job):
    """Start ``job`` in ``pool`` as the local executor does (log opened, header written)."""
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(job.log_path, "ab")
    proc = pool.start(job.argv, job.child_env(), job.cwd, log)
    return proc, log


def test_warm_job_sees_what_a_subprocess_sees(probe_env, monkeypatch):
    """Environment replaced (not merged with the worker's), per-job nnU-Net folders (also where a
    module bound them at import), import-time settings, cwd, argv, __main__, session, stdin/out."""
    env = probe_env
    monkeypatch.setenv("ATSO_TEST_WORKER_ONLY", "1")  # in the worker's environment, not the jobs'
    monkeypatch.delenv("nnUNet_def_n_proc", raising=False)
    pool = env.make_pool()
    pool.warm_up(env.tmp / "worker_logs")
    monkeypatch.delenv("ATSO_TEST_WORKER_ONLY")
    (env.tmp / "cwd").mkdir()
    reports = {}
    for mode, executor in (("plain", LocalExecutor(retries=0)), ("warm", LocalExecutor(retries=0, warm=pool)),
                           ("warm2", LocalExecutor(retries=0, warm=pool))):
        out = env.tmp / f"{mode}.json"
        job = _job(env, mode, "report", str(out), extra_env={"nnUNet_results": str(env.tmp / f"results_{mode}"),
                                                             "nnUNet_def_n_proc": "5"}, cwd=env.tmp / "cwd")
        assert executor.run_batch([job])[0].returncode == 0
        reports[mode] = json.loads(out.read_text())
        reports[mode]["log"] = job.log_path.read_text()
    plain, warm, warm2 = reports["plain"], reports["warm"], reports["warm2"]
    assert pool.workers and pool.workers[0].warm_up_s is not None  # the warm runs did use the worker
    assert warm["pid"] != plain["pid"] and warm["pid"] != pool.workers[0].proc.pid
    assert "ATSO_TEST_WORKER_ONLY" not in warm["env"]
    for key in ("cwd", "def_n_proc", "stdin"):
        assert warm[key] == plain[key], key
    assert warm["argv"] == [env.script, "report", str(env.tmp / "warm.json")]
    assert plain["argv"] == [env.script, "report", str(env.tmp / "plain.json")]
    no_results = lambda e: {k: v for k, v in e.items() if k != "nnUNet_results"}  # noqa: E731
    assert no_results(warm["env"]) == no_results(plain["env"])
    assert warm["def_n_proc"] == 5
    assert warm["results"] == warm["results_seen_by_importer"] == str(env.tmp / "results_warm")
    assert warm2["results"] == warm2["results_seen_by_importer"] == str(env.tmp / "results_warm2")
    assert warm["main_file"] == env.script
    for r in (plain, warm):
        assert r["sid"] == r["pid"] == r["pgid"]  # own session, as start_new_session=True
        assert r["log"].count("to stdout") == 1 and r["log"].count("to stderr") == 1
        assert r["log"].startswith("=== attempt 1 ===")
    assert warm["stdout"] == str(env.tmp / "logs" / "warm.log")


def test_exit_codes_and_uncaught_exception(probe_env):
    env = probe_env
    pool = env.make_pool()
    for args, expected in ((("exit", "3"), 3), (("report", str(env.tmp / "r.json"), "7"), 7),
                           (("raise",), 1), (("exit", "0"), 0)):
        proc, log = _start(pool, _job(env, "code", *args))
        assert proc is not None
        assert proc.wait(timeout=60) == expected, args
        log.close()
    text = (env.tmp / "logs" / "code.log").read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: probe failure" in text


def test_exit_keeps_what_a_normal_exit_does(probe_env):
    """The child skips the interpreter's teardown but still joins threads, runs atexit handlers,
    flushes its output and prints a sys.exit message, as the console script does (plain = reference)."""
    env = probe_env
    pool = env.make_pool()
    for mode, executor in (("plain", LocalExecutor(retries=0)), ("warm", LocalExecutor(retries=0, warm=pool))):
        out = env.tmp / f"cleanup_{mode}"
        job = _job(env, f"cleanup_{mode}", "cleanup", str(out))
        assert executor.run_batch([job])[0].returncode == 0, mode
        assert Path(f"{out}.atexit").read_text() == "ran", mode
        assert Path(f"{out}.thread").read_text() == "ran", mode
        assert "buffered line without newline" in job.log_path.read_text(), mode
    for args, expected, text in ((("message",), 1, "probe says goodbye"), (("exit", "300"), 300 & 0xFF, None)):
        proc, log = _start(pool, _job(env, args[0], *args))
        assert proc.wait(timeout=60) == expected, args
        log.close()
        if text:
            assert text in (env.tmp / "logs" / f"{args[0]}.log").read_text()


def test_executor_warm_up_starts_the_workers_in_the_background(probe_env):
    env = probe_env
    pool = env.make_pool(size=2)
    executor = LocalExecutor(retries=0, warm=pool)
    executor.warm_up(env.tmp / "early_logs")
    assert len(pool.workers) == 2  # started, not waited for
    assert all(w.wait_ready(60) for w in pool.workers)
    assert sorted(p.name for p in (env.tmp / "early_logs").iterdir()) == ["warm_worker_1.log", "warm_worker_2.log"]
    job = _job(env, "after_warm_up", "exit", "0")
    assert executor.run_batch([job])[0].returncode == 0
    assert len(pool.workers) == 2  # the first job used a worker already there
    LocalExecutor(retries=0).warm_up(env.tmp / "none")  # plain subprocesses: nothing to start
    assert not (env.tmp / "none").exists()


def test_failed_job_is_retried_and_reported_with_its_log(probe_env):
    env = probe_env
    executor = LocalExecutor(retries=1, warm=env.make_pool())
    with pytest.raises(StepFailedError) as err:
        executor.run_batch([_job(env, "bad", "exit", "4")])
    assert "exit code 4 after 2 attempt(s)" in str(err.value) and "bad.log" in str(err.value)
    assert (env.tmp / "logs" / "bad.log").read_text().count("=== attempt") == 2


def test_signal_to_the_job_group_and_worker_reuse(probe_env):
    env = probe_env
    pool = env.make_pool()
    pid_file = env.tmp / "pid"
    proc, log = _start(pool, _job(env, "sleeper", "sleep", str(pid_file), "60"))
    deadline = time.time() + 30
    while not pid_file.exists():
        assert time.time() < deadline
        time.sleep(0.05)
    assert int(pid_file.read_text()) == proc.pid
    os.killpg(proc.pid, signal.SIGTERM)  # what the executor does on Ctrl-C / SIGTERM
    assert proc.wait(timeout=10) == -signal.SIGTERM
    assert proc.poll() == -signal.SIGTERM
    log.close()
    proc2, log2 = _start(pool, _job(env, "after", "exit", "0"))
    assert proc2.wait(timeout=30) == 0
    log2.close()
    assert len(pool.workers) == 1


def test_interrupted_executor_terminates_warm_jobs(probe_env):
    """SIGTERM to the driver while a warm job runs: the job's group is terminated, as for subprocesses."""
    env = probe_env
    executor = LocalExecutor(retries=0, warm=env.make_pool(), kill_grace_s=5)
    pid_file = env.tmp / "pid"
    job = _job(env, "long", "sleep", str(pid_file), "60")

    def alarm(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, alarm)
    try:
        signal.alarm(8)
        with pytest.raises(KeyboardInterrupt):
            executor.run_batch([job])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    pid = int(pid_file.read_text())
    assert _gone(pid, 5)


def _gone(pid: int, within: float) -> bool:
    """True once ``pid`` no longer exists (or is a zombie) within ``within`` seconds."""
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return True
        if "\nState:\tZ" in state:
            return True
        time.sleep(0.1)
    return False


DRIVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from atso_nnunet.execution.warm.pool import WarmPool
    script, bin_dir, pid_file, log = sys.argv[1:5]
    pool = WarmPool(1, preload=("warm_probe",), scripts={"nnUNetv2_probe": "warm_probe:main"},
                    scripts_dir=Path(bin_dir))
    proc = pool.start([script, "sleep", pid_file, "120"], dict(__import__("os").environ), None, open(log, "ab"))
    print(proc.pid, flush=True)
    time.sleep(120)
""")


def test_job_dies_when_the_driver_is_killed(probe_env):
    """SIGKILL of the driver: worker and job go too (PR_SET_PDEATHSIG chain), as with subprocesses."""
    env = probe_env
    pid_file = env.tmp / "pid"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, env.script, str(env.tmp / "bin"), str(pid_file),
                               str(env.tmp / "job.log")], stdout=subprocess.PIPE, text=True)
    try:
        job_pid = int(driver.stdout.readline())
        deadline = time.time() + 30
        while not pid_file.exists():
            assert time.time() < deadline
            time.sleep(0.05)
        assert not _gone(job_pid, 0.2)
    finally:
        driver.kill()
        driver.wait()
    assert _gone(job_pid, 10), "the job outlived its killed driver"


def test_thread_cap_holds_against_nnunets_set_num_threads(probe_env):
    env = probe_env
    preload = ("torch", *LIGHT_PRELOAD)
    capped, free = env.make_pool(preload=preload, threads=1), env.make_pool(preload=preload)
    seen = {}
    for name, pool in (("capped", capped), ("free", free), ("free2", free)):
        out = env.tmp / f"{name}.json"
        proc, log = _start(pool, _job(env, name, "threads", str(out)))
        assert proc.wait(timeout=120) == 0, (env.tmp / "logs" / f"{name}.log").read_text()
        log.close()
        seen[name] = json.loads(out.read_text())
    assert seen["capped"]["torch_threads"] == 1
    assert seen["free"]["torch_threads"] == os.cpu_count()
    assert seen["free"]["torch_seed"] != seen["free2"]["torch_seed"]  # fresh random state per job
    assert seen["free"]["cuda_initialized"] is False
    assert all(w.warm_up_s is not None for w in capped.workers + free.workers)


def test_only_this_environments_console_scripts_run_warm(probe_env, tmp_path):
    env = probe_env
    scripts = {SCRIPT: "warm_probe:main"}
    bin_dir = tmp_path / "bin"
    assert entry_point_for([env.script, "x"], {}, scripts, bin_dir) == "warm_probe:main"
    assert entry_point_for([SCRIPT, "x"], {"PATH": str(bin_dir)}, scripts, bin_dir) == "warm_probe:main"
    assert entry_point_for([SCRIPT, "x"], {"PATH": "/nonexistent"}, scripts, bin_dir) is None
    other = tmp_path / "other"
    other.mkdir()
    (other / SCRIPT).write_text("#!/bin/sh\n")
    assert entry_point_for([str(other / SCRIPT)], {}, scripts, bin_dir) is None  # another environment
    assert entry_point_for([sys.executable, "-c", "pass"], {}, scripts, bin_dir) is None
    # nnU-Net's own scripts resolve to the functions their script files call
    eps = console_entry_points()
    assert eps["nnUNetv2_train"] == "nnunetv2.run.run_training:run_training_entry"
    assert eps["nnUNetv2_predict"] == "nnunetv2.inference.predict_from_raw_data:predict_entry_point"
    assert entry_point_for([console_script("nnUNetv2_train"), "1", "2d", "all"], {}, eps) == eps["nnUNetv2_train"]
    # a job that cannot run warm runs as a plain subprocess, without starting a worker
    pool = env.make_pool()
    job = Job(name="plain", argv=[sys.executable, "-c", "print('plain')"], log_path=tmp_path / "plain.log",
              uses_gpu=False)
    assert LocalExecutor(warm=pool).run_batch([job])[0].returncode == 0
    assert pool.workers == [] and "plain" in job.log_path.read_text()


def test_refresh_import_time_settings_rebinds_importers(tmp_path, monkeypatch):
    """A module that read the environment at import, and one that imported its value by name."""
    (tmp_path / "fake_env_paths.py").write_text("import os\nresults = os.environ.get('FAKE_RESULTS')\n")
    (tmp_path / "fake_env_user.py").write_text("from fake_env_paths import results\nother = 'untouched'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FAKE_RESULTS", "/worker/value")
    import fake_env_paths
    import fake_env_user

    try:
        assert fake_env_user.results == "/worker/value"
        monkeypatch.setenv("FAKE_RESULTS", "/job/value")
        assert refresh_import_time_settings(["fake_env_paths", "not_imported_module"]) == ["fake_env_paths"]
        assert fake_env_paths.results == fake_env_user.results == "/job/value"
        assert fake_env_user.other == "untouched"
    finally:
        sys.modules.pop("fake_env_paths", None)
        sys.modules.pop("fake_env_user", None)


def test_warm_workers_switch(monkeypatch):
    monkeypatch.delenv("ATSO_WARM_WORKERS", raising=False)
    assert warm_workers_enabled()
    for off in ("0", "false", "OFF", "no"):
        assert not warm_workers_enabled({"ATSO_WARM_WORKERS": off})
    assert make_executor("local", warm_workers=False).warm is None
    assert make_executor("local", warm_workers=True).warm is not None


def test_cpu_jobs_and_thread_cap(monkeypatch):
    from atso_nnunet.errors import InputError
    from atso_nnunet.execution.warm import pool
    from atso_nnunet.execution.warm.pool import default_cpu_jobs

    monkeypatch.delenv("ATSO_CPU_JOBS", raising=False)
    monkeypatch.setattr(pool.os, "cpu_count", lambda: 8)  # an 8-core machine, whatever runs the test
    two = make_executor("local", warm_workers=True, cpu_jobs=2)
    assert two.max_parallel == 2 and two.warm.size == 2 and two.warm.threads == 4
    assert make_executor("local", warm_workers=True, cpu_jobs=3).warm.threads == 2  # 8 // 3, the rest idle
    assert make_executor("local", warm_workers=True, cpu_jobs=16).warm.threads == 1  # never 0
    assert make_executor("local", warm_workers=True).max_parallel == 2  # DEFAULT_CPU_JOBS_WARM
    monkeypatch.setattr(pool.os, "cpu_count", lambda: 1)
    assert make_executor("local", warm_workers=True).max_parallel == 1  # not more jobs than CPUs
    one = make_executor("local", warm_workers=True, cpu_jobs=1)
    assert one.max_parallel == 1 and one.warm.threads is None  # one job: nnU-Net's own thread count
    assert make_executor("local", warm_workers=False).max_parallel == default_cpu_jobs(False) == 1
    gpus = make_executor("local", gpus=["0", "1"], warm_workers=True, cpu_jobs=2)
    assert gpus.max_parallel == 2 and gpus.warm.threads is None  # CPU slots apply without GPUs only
    monkeypatch.setenv("ATSO_CPU_JOBS", "3")
    assert make_executor("local", warm_workers=True).max_parallel == 3
    monkeypatch.setenv("ATSO_CPU_JOBS", "zero")
    with pytest.raises(InputError, match="ATSO_CPU_JOBS"):
        make_executor("local")


def test_dry_run_commands_identical_with_and_without_warm_workers(tmp_path, capsys):
    """Warm workers change how a command starts, never which command: --dry-run prints the same."""
    from atso_nnunet.cli.run import main

    outputs = []
    for flags in ([], ["--no-warm-workers"], ["--cpu-jobs", "1"]):
        args = ["-d", "synthetic", "-f", "10pct", "--nnunet-dir", str(tmp_path / "nn"),
                "--run-dir", str(tmp_path / "run"), "--dry-run", *flags]
        assert main(args) == 0
        outputs.append(capsys.readouterr().out)
    assert "nnUNetv2_train" in outputs[0] and "nnUNetv2_predict" in outputs[0]
    assert outputs[0] == outputs[1] == outputs[2]


def test_cpu_slots_only_for_cpu_runs(tmp_path, monkeypatch):
    """--device cuda without --gpus keeps one job at a time (two would share the one GPU)."""
    from atso_nnunet.cli.run import build_parser, make_executor_from_args

    monkeypatch.delenv("ATSO_CPU_JOBS", raising=False)
    monkeypatch.delenv("ATSO_WARM_WORKERS", raising=False)

    def executor(*flags):
        args = build_parser().parse_args(["-d", "synthetic", "-f", "10pct", *flags])
        return make_executor_from_args(args, tmp_path)

    assert executor().max_parallel == 2 and executor("--device", "cpu").max_parallel == 2
    assert executor("--device", "cuda").max_parallel == 1
    assert executor("--device", "cuda", "--cpu-jobs", "2").max_parallel == 2  # asked for explicitly
    assert executor("--no-warm-workers").max_parallel == 1
