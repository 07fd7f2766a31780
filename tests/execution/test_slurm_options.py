"""atso_nnunet_run's device and SLURM options, and the driver's refusal of stray trainer variables."""
from __future__ import annotations

from pathlib import Path

import pytest

from atso_nnunet.cli.run import build_parser, main, resolve_device, slurm_config
from atso_nnunet.errors import InputError
from atso_nnunet.execution.slurm import cluster as slurm_cluster
from atso_nnunet.nnunet.commands import job_env, stray_trainer_variables
from atso_nnunet.paths import NnUNetPaths


class _Plan:
    slurm = None


def _args(*argv):
    return build_parser().parse_args(["-d", "synthetic", "-f", "10pct", *argv])


@pytest.mark.parametrize("argv,device", [
    ((), "cpu"), (("--gpus", "0,1"), "cuda"), (("--device", "cuda"), "cuda"),
    (("--executor", "slurm"), "cuda"),                                   # SlurmConfig asks 1 GPU by default
    (("--executor", "slurm", "--slurm-gpus-per-job", "0"), "cpu"),
    (("--executor", "slurm", "--device", "cpu"), "cpu"),
])
def test_device_follows_the_resources(argv, device, tmp_path):
    assert resolve_device(_args(*argv), _Plan(), tmp_path) == device


def test_device_cpu_asks_no_gpus_and_contradictions_are_refused(tmp_path):
    assert slurm_config(_args("--executor", "slurm", "--device", "cpu"), _Plan(), tmp_path).gpus_per_job == 0
    with pytest.raises(InputError, match="--device cuda with --slurm-gpus-per-job 0"):
        resolve_device(_args("--executor", "slurm", "--device", "cuda", "--slurm-gpus-per-job", "0"), _Plan(), tmp_path)
    with pytest.raises(InputError, match="--device cpu with 2 SLURM GPU"):
        slurm_config(_args("--executor", "slurm", "--device", "cpu", "--slurm-gpus-per-job", "2"), _Plan(), tmp_path)


def test_slurm_flags_reach_the_config(tmp_path):
    cfg = slurm_config(_args("--executor", "slurm", "--slurm-time-min", "5", "--slurm-signal-delay-s", "45",
                             "--slurm-max-requeues", "4", "--slurm-cpus", "1", "--slurm-poll-s", "2"),
                       _Plan(), tmp_path / "Dataset1_X__atso")
    assert (cfg.time_min, cfg.signal_delay_s, cfg.max_requeues, cfg.cpus_per_task, cfg.poll_interval_s) == \
        (5, 45, 4, 1, 2.0)
    assert cfg.job_name_prefix == "atso:Dataset1_X__atso"
    with pytest.raises(InputError, match="signal_delay_s.*--slurm-time-min"):
        slurm_config(_args("--executor", "slurm", "--slurm-time-min", "1"), _Plan(), tmp_path)


def test_every_slurm_flag_has_help():
    parser = build_parser()
    slurm_actions = [a for a in parser._actions if any(o.startswith("--slurm") for o in a.option_strings)]
    assert len(slurm_actions) >= 10
    assert all(a.help for a in slurm_actions)
    device = next(a for a in parser._actions if "--device" in a.option_strings)
    assert device.choices == ("cpu", "cuda") and device.help


def test_unknown_partition_refused_before_any_work(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(slurm_cluster, "_run", lambda argv, timeout=60: (0, "cpu*|up|(null)|2|20000\n", ""))
    nn = tmp_path / "nn"
    rc = main(["-d", "synthetic", "-f", "10pct", "--nnunet-dir", str(nn), "--run-dir", str(tmp_path / "run"),
               "--executor", "slurm", "--slurm-partition", "gpu", "--device", "cpu"])
    assert rc == 2 and "sinfo knows no such partition" in caplog.text
    assert not (tmp_path / "run").exists() and not list((nn / "nnUNet_raw").rglob("*"))


def test_job_env_carries_only_the_run_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    env = job_env(NnUNetPaths.under(tmp_path), run_config=tmp_path / "r.json")
    assert set(env) == {"nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer",
                        "ATSO_RUN_CONFIG"}


def test_driver_refuses_stray_trainer_variables(tmp_path, monkeypatch, caplog):
    assert stray_trainer_variables({"ATSO_NUM_EPOCHS": "3", "ATSO_INIT": "", "ATSO_RUN_CONFIG": "x"}) == \
        ["ATSO_NUM_EPOCHS"]
    monkeypatch.setenv("ATSO_NUM_EPOCHS", "3")
    monkeypatch.setenv("ATSO_INITIAL_LR", "0.1")
    rc = main(["-d", "synthetic", "-f", "10pct", "--nnunet-dir", str(tmp_path / "nn"), "--run-dir",
               str(tmp_path / "run"), "--dry-run"])
    assert rc == 2
    assert "ATSO_INITIAL_LR, ATSO_NUM_EPOCHS" in caplog.text and "single source" in caplog.text
    assert not Path(tmp_path / "run").exists()
