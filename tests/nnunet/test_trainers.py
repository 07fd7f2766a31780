"""atso_nnunet trainers: run config, discovery by nnU-Net, tiny trainings (in-process and CLI)."""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import time
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import torch

from atso_nnunet.errors import InputError
from atso_nnunet.io import read_array
from atso_nnunet.nnunet.commands import ext_trainer_dir, nnunet_env, predict_command, train_command
from atso_nnunet.paths import nnunet_environment
from atso_nnunet.nnunet.planning import plans_file
from atso_nnunet.nnunet.trainers import ATSOTrainer, TrainerRunConfig
from atso_nnunet.nnunet.trainers.base import RUN_CONFIG_FILE
from atso_nnunet.nnunet.trainers.resumes import read_resumes

pytest_plugins = ["fixtures_nnunet"]

TINY_SCHEDULE = {"ATSO_NUM_EPOCHS": "1", "ATSO_ITERATIONS_PER_EPOCH": "2", "ATSO_VAL_ITERATIONS_PER_EPOCH": "1",
                 "ATSO_FINAL_VALIDATION": "0"}


# ---------------------------------------------------------------------------- run config
def test_run_config_defaults_to_nnunet():
    config = TrainerRunConfig.from_env({})
    assert config == TrainerRunConfig()
    assert all(v is None for v in config.to_dict().values())
    assert not config.init_from_checkpoint


def test_run_config_from_env_variables(tmp_path):
    ckpt = tmp_path / "teacher.pth"
    config = TrainerRunConfig.from_env({
        "ATSO_NUM_EPOCHS": "3", "ATSO_ITERATIONS_PER_EPOCH": "10", "ATSO_VAL_ITERATIONS_PER_EPOCH": "0",
        "ATSO_SAVE_EVERY": "2", "ATSO_FINAL_VALIDATION": "false", "ATSO_INIT_CHECKPOINT": str(ckpt),
        "ATSO_INITIAL_LR": "0.005", "ATSO_PSEUDOLABELS": str(tmp_path), "ATSO_PSEUDOLABEL_CASES": "a, b",
        "ATSO_LABELED_FRACTION": "0.5", "ATSO_SAVE_UNRELATED": "x"})
    assert config == TrainerRunConfig(num_epochs=3, num_iterations_per_epoch=10, num_val_iterations_per_epoch=0,
                                      save_every=2, final_validation=False, init="checkpoint",
                                      init_checkpoint=str(ckpt), initial_lr=0.005, pseudo_label_dir=str(tmp_path),
                                      pseudo_label_cases=["a", "b"], labeled_fraction=0.5)
    assert config.init_from_checkpoint
    assert TrainerRunConfig.from_env(config.to_env()) == config


def test_run_config_json_then_variables(tmp_path):
    path = TrainerRunConfig(num_epochs=5, num_iterations_per_epoch=7, final_validation=True).to_json(
        tmp_path / "run.json")
    assert TrainerRunConfig.from_json(path).num_epochs == 5
    config = TrainerRunConfig.from_env({"ATSO_RUN_CONFIG": str(path), "ATSO_NUM_EPOCHS": "2", "ATSO_INIT": ""})
    assert (config.num_epochs, config.num_iterations_per_epoch, config.final_validation) == (2, 7, True)
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("env, names", [
    ({"ATSO_NUM_EPOCHS": "two"}, "ATSO_NUM_EPOCHS"),
    ({"ATSO_NUM_EPOCHS": "0"}, "ATSO_NUM_EPOCHS"),
    ({"ATSO_FINAL_VALIDATION": "maybe"}, "ATSO_FINAL_VALIDATION"),
    ({"ATSO_INIT": "teacher"}, "ATSO_INIT"),
    ({"ATSO_INIT": "checkpoint"}, "init_checkpoint"),
    ({"ATSO_LABELED_FRACTION": "1.5"}, "ATSO_LABELED_FRACTION"),
    ({"ATSO_INITIAL_LR": "-1"}, "ATSO_INITIAL_LR"),
    ({"ATSO_OVERSAMPLE_FOREGROUND": "2"}, "ATSO_OVERSAMPLE_FOREGROUND"),
    ({"ATSO_PSEUDOLABEL_CASES": "a"}, "ATSO_PSEUDOLABEL_CASES"),
])
def test_run_config_errors_name_the_variable(env, names):
    with pytest.raises(InputError, match=names):
        TrainerRunConfig.from_env(env)


def test_run_config_file_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"num_epochs": -1}))
    with pytest.raises(InputError, match=r"bad\.json.*num_epochs"):
        TrainerRunConfig.from_env({"ATSO_RUN_CONFIG": str(bad)})
    bad.write_text(json.dumps({"epochs": 1}))
    with pytest.raises(InputError, match="unknown field"):
        TrainerRunConfig.from_json(bad)
    with pytest.raises(InputError, match="not found"):
        TrainerRunConfig.from_env({"ATSO_RUN_CONFIG": str(tmp_path / "missing.json")})
    with pytest.raises(InputError, match="save_every"):
        TrainerRunConfig(save_every=0)


# ---------------------------------------------------------------------------- discovery
def test_ext_folder_is_a_flat_module_folder():
    folder = ext_trainer_dir()
    assert (folder / "atso_nnunet_trainers.py").is_file()
    assert not (folder / "__init__.py").exists()


def test_nnunet_finds_the_trainers_through_ext_trainer(tmp_path):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    other = tmp_path / "other_ext"
    other.mkdir()
    env = nnunet_env(_dummy_paths(tmp_path), base_env={"nnUNet_extTrainer": str(other)})
    assert env["nnUNet_extTrainer"].split(os.pathsep) == [str(other), str(ext_trainer_dir())]
    with patch.dict(os.environ, {"nnUNet_extTrainer": env["nnUNet_extTrainer"]}, clear=False):
        found = recursive_find_trainer_class_by_name("ATSOTrainer")
    assert found is ATSOTrainer


def test_nnunet_does_not_find_the_trainers_without_ext_trainer():
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    with patch.dict(os.environ, env, clear=True):
        with pytest.raises(RuntimeError, match="ATSOTrainer"):
            recursive_find_trainer_class_by_name("ATSOTrainer")


def _dummy_paths(tmp_path):
    from atso_nnunet.paths import NnUNetPaths
    return NnUNetPaths.under(tmp_path / "nnunet")


# ---------------------------------------------------------------------------- tiny trainings
def _trainer(planned, paths, view="axial"):
    plans = json.loads(plans_file(paths, planned.dataset_name, planned.plans[view]).read_text())
    plans = copy.deepcopy(plans)
    plans["continue_training"] = False
    dataset_json = json.loads((paths.preprocessed / planned.dataset_name / "dataset.json").read_text())
    return ATSOTrainer(plans, "2d", "all", dataset_json, torch.device("cpu"))


@pytest.mark.slow
def test_tiny_training_in_process_then_init_from_its_checkpoint(planned_tiny, tmp_path, monkeypatch):
    paths = planned_tiny.with_results(tmp_path / "results")
    for k, v in TINY_SCHEDULE.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.setenv("ATSO_INITIAL_LR", "0.003")
    t0 = time.monotonic()
    with nnunet_environment(paths):
        trainer = _trainer(planned_tiny, paths)
        assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (1, 2, 1)
        assert trainer.initial_lr == 0.003
        trainer.run_training()
        trainer.perform_actual_validation()  # skipped: final_validation=False
    print(f"tiny in-process training: {time.monotonic() - t0:.1f} s")
    fold = paths.results / planned_tiny.dataset_name / "ATSOTrainer__ATSOPlans_axial__2d" / "fold_all"
    final = fold / "checkpoint_final.pth"
    assert final.is_file()
    assert not (fold / "validation").exists()
    assert json.loads((fold / RUN_CONFIG_FILE).read_text())["num_epochs"] == 1

    # a student initialised from the teacher gets all of its weights, segmentation head included
    monkeypatch.setenv("ATSO_INIT_CHECKPOINT", str(final))
    student_paths = planned_tiny.with_results(tmp_path / "student")
    with nnunet_environment(student_paths):
        student = _trainer(planned_tiny, student_paths)
        assert student.run_config.init_from_checkpoint
        student.on_train_start()  # builds the network, then loads the teacher before any step
    teacher = torch.load(final, map_location="cpu", weights_only=False)["network_weights"]
    after = student.network.state_dict()
    assert set(after) == set(teacher)
    assert all(torch.equal(after[k], teacher[k]) for k in after)
    assert any(".seg_layers." in k for k in after)

    prefixed = tmp_path / "prefixed.pth"
    torch.save({"network_weights": {"_orig_mod." + k: v for k, v in teacher.items()}}, prefixed)
    student.load_init_weights(str(prefixed))
    with pytest.raises(InputError, match="not found"):
        student.load_init_weights(str(tmp_path / "missing.pth"))


def _train_counting_plots(planned, paths, monkeypatch, plot_every=None, best_every=None):
    """A seeded 4-epoch tiny training; returns (final weights, epochs that drew the plot, log text)."""
    from nnunetv2.training.logging.nnunet_logger import MetaLogger

    schedule = {**TINY_SCHEDULE, "ATSO_NUM_EPOCHS": "4", "ATSO_SEED": "3", "nnUNet_n_proc_DA": "0"}
    for k, v in schedule.items():
        monkeypatch.setenv(k, v)
    for var, value in (("ATSO_PLOT_EVERY", plot_every), ("ATSO_BEST_CHECKPOINT_EVERY", best_every)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, str(value))
    drawn = []
    original = MetaLogger.plot_progress_png

    def counting(self, folder):
        drawn.append(len(self.get_value("train_losses", step=None)) - 1)
        return original(self, folder)

    with monkeypatch.context() as m, nnunet_environment(paths):
        m.setattr(MetaLogger, "plot_progress_png", counting)
        trainer = _trainer(planned, paths)
        trainer.run_training()
    weights = {k: v.clone() for k, v in trainer.network.state_dict().items()}
    return weights, drawn, trainer.log_file, trainer.output_folder


def test_plot_and_best_checkpoint_cadence_leave_the_weights_unchanged(planned_tiny, tmp_path, monkeypatch):
    """Issue 26: the cadence changes when nnU-Net plots and checks for a new best, not what it learns."""
    every, every_drawn, _, _ = _train_counting_plots(planned_tiny, planned_tiny.with_results(tmp_path / "a"),
                                                     monkeypatch)
    cad, cad_drawn, cad_log, cad_folder = _train_counting_plots(
        planned_tiny, planned_tiny.with_results(tmp_path / "b"), monkeypatch, plot_every=3, best_every=3)
    assert every_drawn == [0, 1, 2, 3]
    assert cad_drawn == [2, 3]                 # epoch 3 of 4 (cadence) and the last
    assert set(every) == set(cad) and all(torch.equal(every[k], cad[k]) for k in every)
    # best checks only on cadence epochs: a "new best" line at most twice, and the file exists
    with open(cad_log) as f:
        assert f.read().count("New best EMA") in (1, 2)
    assert os.path.isfile(os.path.join(cad_folder, "checkpoint_best.pth"))
    assert os.path.isfile(os.path.join(cad_folder, "progress.png"))


@pytest.mark.slow
@pytest.mark.cli
def test_tiny_training_and_prediction_with_nnunet_cli(planned_tiny, tmp_path):
    paths = planned_tiny.with_results(tmp_path / "results")
    run_config = TrainerRunConfig(num_epochs=1, num_iterations_per_epoch=2, num_val_iterations_per_epoch=1,
                                  final_validation=False).to_json(tmp_path / "run_config.json")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ATSO_", "nnUNet_extTrainer"))}
    env = nnunet_env(paths, run_config=run_config, base_env=base)
    env["nnUNet_n_proc_DA"] = "0"
    t0 = time.monotonic()
    subprocess.run(train_command(planned_tiny.dataset_id, "2d", "all", "ATSOTrainer", "ATSOPlans_axial"),
                   env=env, check=True, capture_output=True, text=True, timeout=600)
    t_train = time.monotonic() - t0
    fold = paths.results / planned_tiny.dataset_name / "ATSOTrainer__ATSOPlans_axial__2d" / "fold_all"
    assert (fold / "checkpoint_final.pth").is_file()
    assert json.loads((fold / RUN_CONFIG_FILE).read_text())["num_iterations_per_epoch"] == 2

    out = tmp_path / "pred"
    images = planned_tiny.dataset_dir / "imagesTs"
    env.pop("nnUNet_n_proc_DA")
    t0 = time.monotonic()
    proc = subprocess.run(predict_command(images, out, planned_tiny.dataset_id, "2d", "all", "ATSOTrainer",
                                          "ATSOPlans_axial", "cpu", disable_tta=True),
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"CLI tiny training: {t_train:.1f} s, prediction: {time.monotonic() - t0:.1f} s")
    inputs = sorted(images.glob("*_0000.nii.gz"))
    assert len(inputs) == 2
    for image in inputs:
        pred = out / image.name.replace("_0000.nii.gz", ".nii.gz")
        arr, geom = read_array(pred)
        _, geom_in = read_array(image)
        assert geom.matches(geom_in)
        assert set(np.unique(arr)) <= {0, 1}


# ---------------------------------------------------------------------------- exact resume (issue 29)
class _Killed(Exception):
    """Stands in for a kill in the middle of a training."""


RESUME_SCHEDULE = {**TINY_SCHEDULE, "ATSO_NUM_EPOCHS": "5", "ATSO_SEED": "11", "ATSO_PLOT_EVERY": "100",
                   "ATSO_BEST_CHECKPOINT_EVERY": "2", "nnUNet_n_proc_DA": "0"}


def _resume_epoch(kill_at, save_every):
    """The epoch a training killed at ``kill_at`` continues at: that of its latest checkpoint."""
    return (kill_at[0] // save_every) * save_every


def _resumable_training(planned, paths, monkeypatch, save_every, kill_at=None):
    """A seeded 5-epoch tiny training; with ``kill_at=(epoch, iteration)`` it is stopped at that
    training step and continued the way ``nnUNetv2_train --c`` does. Returns the final checkpoint."""
    from nnunetv2.run.run_training import maybe_load_checkpoint

    for k, v in {**RESUME_SCHEDULE, "ATSO_SAVE_EVERY": str(save_every)}.items():
        monkeypatch.setenv(k, v)
    with nnunet_environment(paths):
        trainer = _trainer(planned, paths)
        if kill_at is not None:
            step, done = trainer.train_step, []

            def killing_step(batch):
                if len(done) == kill_at[0] * trainer.num_iterations_per_epoch + kill_at[1]:
                    raise _Killed
                done.append(trainer.current_epoch)
                return step(batch)

            trainer.train_step = killing_step
            with pytest.raises(_Killed):
                trainer.run_training()
            assert not (Path(trainer.output_folder) / "checkpoint_final.pth").exists()
            trainer = _trainer(planned, paths)          # a new process: a fresh trainer, --c
            maybe_load_checkpoint(trainer, True, False, None)
            assert trainer.current_epoch == _resume_epoch(kill_at, save_every)
        trainer.run_training()
        folder = Path(trainer.output_folder)
    assert not list(folder.glob(".*.partial"))
    expected = [] if kill_at is None else [(_resume_epoch(kill_at, save_every), True)]
    assert [(r["epoch"], r["exact"]) for r in read_resumes(folder)] == expected
    return torch.load(folder / "checkpoint_final.pth", map_location="cpu", weights_only=False), trainer.log_file


_UNINTERRUPTED = {}   # save_every changes when checkpoints are written, not the weights: train it once


@pytest.mark.parametrize("save_every, kill_at", [
    pytest.param(1, (3, 1), id="every1-kill-e3i1"),
    pytest.param(2, (3, 0), id="every2-kill-e3i0", marks=pytest.mark.slow),
])
def test_a_killed_and_continued_training_ends_with_the_same_weights(planned_tiny, tmp_path, monkeypatch,
                                                                      save_every, kill_at):
    """Issue 29: killed mid-epoch and continued from checkpoint_latest.pth (up to save_every - 1 epochs
    old), a seeded training ends bit-identical to the same training uninterrupted."""
    if "whole" not in _UNINTERRUPTED:
        _UNINTERRUPTED["whole"], _ = _resumable_training(
            planned_tiny, planned_tiny.with_results(tmp_path / "whole"), monkeypatch, save_every)
    whole = _UNINTERRUPTED["whole"]
    resumed, log = _resumable_training(planned_tiny, planned_tiny.with_results(tmp_path / "resumed"), monkeypatch,
                                       save_every, kill_at=kill_at)
    a, b = whole["network_weights"], resumed["network_weights"]
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert whole["logging"]["train_losses"] == resumed["logging"]["train_losses"]
    assert whole["_best_ema"] == resumed["_best_ema"]
    with open(log) as f:
        assert "every epoch is seeded from (seed 11, epoch)" in f.read()


def _cli_training(planned, paths, run_config, kill_in_epoch=None):
    """``nnUNetv2_train`` in a subprocess; with ``kill_in_epoch`` SIGKILLed once its log shows that
    epoch, then continued with ``--c``. Returns the final checkpoint."""
    import signal

    base = {k: v for k, v in os.environ.items() if not k.startswith(("ATSO_", "nnUNet_extTrainer"))}
    env = {**nnunet_env(paths, run_config=run_config, base_env=base), "nnUNet_n_proc_DA": "0"}
    argv = train_command(planned.dataset_id, "2d", "all", "ATSOTrainer", "ATSOPlans_axial")
    fold = paths.results / planned.dataset_name / "ATSOTrainer__ATSOPlans_axial__2d" / "fold_all"
    if kill_in_epoch is not None:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if any(re.search(rf": Epoch {kill_in_epoch} *$", p.read_text(), re.M) for p in fold.glob("training_log_*.txt")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the training ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not (fold / "checkpoint_final.pth").exists()
        argv = argv + ["--c"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)


@pytest.mark.slow
@pytest.mark.cli
def test_a_sigkilled_nnunet_train_continued_with_c_ends_with_the_same_weights(planned_tiny, tmp_path):
    """Issue 29 through nnU-Net's CLI: SIGKILL in epoch 3 (checkpoint every epoch), ``--c`` in a new
    process, final weights bit-identical to an uninterrupted ``nnUNetv2_train``."""
    run_config = TrainerRunConfig(num_epochs=5, num_iterations_per_epoch=2, num_val_iterations_per_epoch=1,
                                  final_validation=False, seed=5, save_every=1, plot_every=100).to_json(
        tmp_path / "run_config.json")
    whole = _cli_training(planned_tiny, planned_tiny.with_results(tmp_path / "whole"), run_config)
    resumed = _cli_training(planned_tiny, planned_tiny.with_results(tmp_path / "resumed"), run_config,
                            kill_in_epoch=3)
    a, b = whole["network_weights"], resumed["network_weights"]
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert whole["logging"]["train_losses"] == resumed["logging"]["train_losses"]
