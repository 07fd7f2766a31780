"""Reading the cluster (squeue, sacct, sinfo) and refusing resources it cannot give, with fake answers."""
from __future__ import annotations

import pytest

from atso_nnunet.errors import InputError
from atso_nnunet.execution.slurm.config import SlurmConfig
from atso_nnunet.execution.slurm import cluster as sc


def test_parse_squeue_sacct_sinfo():
    assert sc.parse_squeue("15_0|RUNNING|atso:r:g1/train/h1/axial\n15_1|PENDING|x|y\n") == {
        "15_0": ("RUNNING", "atso:r:g1/train/h1/axial"), "15_1": ("PENDING", "x|y")}
    assert sc.parse_sacct("15_0|COMPLETED\n15_0.batch|COMPLETED\n15_1|CANCELLED by 0\n") == {
        "15_0": "COMPLETED", "15_1": "CANCELLED"}
    parts = sc.parse_sinfo("cpu*|up|(null)|2|21694\ngpu|up|gpu:a100:4(S:0-1)|64|512000\n"
                           "gpu|up|(null)|32|256000\ndown|down|(null)|8|1000\n")
    assert parts["cpu"].default and not sc.partition_has_gpus(parts["cpu"])
    assert sc.partition_has_gpus(parts["gpu"]) and parts["gpu"].max_cpus == 64 and parts["gpu"].max_mem_mb == 512000
    assert not parts["down"].available


def test_job_name_keeps_the_step_within_the_limit():
    assert sc.job_name("atso:run", "g1/train/h1/axial") == "atso:run:g1/train/h1/axial"
    long = sc.job_name("atso:" + "x" * 200, "g1/train/h1/axial")
    assert len(long) == sc.MAX_JOB_NAME and long.endswith(":g1/train/h1/axial") and long.startswith("...")
    assert sc.job_name("atso:my run", "s") == "atso:my_run:s"


def test_check_resources_refuses_what_cannot_work():
    known = sc.parse_sinfo("cpu*|up|(null)|2|21694\ngpu|up|gpu:2|16|64000\n")
    assert sc.check_resources(SlurmConfig(gpus_per_job=0, cpus_per_task=1, mem_gb=2), known).name == "cpu"
    with pytest.raises(InputError, match="no such partition.*cpu, gpu"):
        sc.check_resources(SlurmConfig(partition="gpus", gpus_per_job=0), known)
    with pytest.raises(InputError, match="GPU.*partition cpu have none.*--slurm-gpus-per-job 0"):
        sc.check_resources(SlurmConfig(gpus_per_job=1, cpus_per_task=1, mem_gb=1), known)
    with pytest.raises(InputError, match="--slurm-cpus 8.*2 CPUs") as info:
        sc.check_resources(SlurmConfig(gpus_per_job=0, cpus_per_task=8, mem_gb=64), known)
    assert "--slurm-mem-gb 64" in str(info.value)  # every problem at once
    assert sc.check_resources(SlurmConfig(partition="gpu", gpus_per_job=1, cpus_per_task=8, mem_gb=32), known)
    with pytest.raises(InputError, match="no default partition"):
        sc.check_resources(SlurmConfig(gpus_per_job=0), sc.parse_sinfo("a|up|(null)|2|100\n"))


def test_signal_delay_not_shorter_than_the_time_limit_is_refused():
    with pytest.raises(ValueError, match="signal_delay_s.*shorter than.*time_min"):
        SlurmConfig(time_min=1)  # the default 120 s warning would come at once


def test_query_states_squeue_first_then_sacct(monkeypatch):
    calls = []

    def fake_run(argv, timeout=60):
        calls.append(argv[0])
        if argv[0] == "squeue":
            assert "--jobs=15,16" in argv and "--states=all" in argv
            return 0, "15_0|PENDING|a\n15_1|COMPLETED|b\n", ""
        return 0, "16|FAILED\n", ""

    monkeypatch.setattr(sc, "_run", fake_run)
    states = sc.query_states(["15_0", "15_1", "16", "15_2"])
    assert states["15_0"] == sc.JobState("PENDING", True, "squeue")
    assert states["15_1"] == sc.JobState("COMPLETED", False, "squeue")
    assert states["16"] == sc.JobState("FAILED", False, "sacct")
    assert states["15_2"] == sc.JobState("UNKNOWN", False, "none")
    assert calls == ["squeue", "sacct"]


def test_squeue_of_a_forgotten_single_id_is_empty(monkeypatch):
    monkeypatch.setattr(sc, "_run", lambda argv, timeout=60: (1, "", "slurm_load_jobs error: Invalid job id specified"))
    assert sc.squeue_jobs(job_ids=["99"]) == {}
    monkeypatch.setattr(sc, "_run", lambda argv, timeout=60: (1, "", "Unable to contact slurm controller"))
    with pytest.raises(sc.ClusterQueryError, match="controller"):
        sc.query_states(["99"])


def test_early_warning_is_reported(monkeypatch, caplog, tmp_path):
    from atso_nnunet.execution.slurm.executor import SlurmExecutor

    assert sc.earliest_warning_s(SlurmConfig(time_min=1, signal_delay_s=20)) == -20
    assert sc.earliest_warning_s(SlurmConfig(time_min=60, signal_delay_s=120)) == 3420
    monkeypatch.setattr(sc, "_run", lambda argv, timeout=60: (0, "cpu*|up|(null)|2|20000\n", ""))
    SlurmExecutor(SlurmConfig(time_min=2, signal_delay_s=20, gpus_per_job=0, cpus_per_task=1, mem_gb=1,
                              log_folder=tmp_path)).check_cluster()
    assert "may tell a task to stop 40 s after it starts" in caplog.text
