"""Pure builders of nnU-Net command lines and their environment (atso_nnunet.nnunet.commands)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from atso_nnunet.nnunet.commands import (console_script, ext_trainer_dir, nnunet_env, predict_command,
                                         train_command)
from atso_nnunet.paths import NnUNetPaths


def test_console_script_is_found_next_to_the_interpreter():
    exe = console_script("nnUNetv2_train")
    assert exe == str(Path(sys.executable).parent / "nnUNetv2_train")
    assert console_script("no_such_tool_xyz") == "no_such_tool_xyz"


def test_train_command():
    argv = train_command(990, "2d", "all", "ATSOTrainer", "ATSOPlans_axial")
    assert Path(argv[0]).name == "nnUNetv2_train"
    assert argv[1:] == ["990", "2d", "all", "-tr", "ATSOTrainer", "-p", "ATSOPlans_axial", "-device", "cpu"]
    argv = train_command(5, "2d", 0, "ATSOSemiTrainer", "ATSOPlans_coronal", device="cuda",
                         continue_training=True, extra=["--npz"])
    assert argv[1:] == ["5", "2d", "0", "-tr", "ATSOSemiTrainer", "-p", "ATSOPlans_coronal", "-device", "cuda",
                        "--c", "--npz"]


def test_predict_command(tmp_path):
    argv = predict_command(tmp_path / "in", tmp_path / "out", 990, "2d", "all", "ATSOTrainer", "ATSOPlans_sagittal",
                           "cpu", save_probabilities=True, num_processes_preprocessing=2,
                           num_processes_segmentation_export=3, disable_tta=True)
    assert Path(argv[0]).name == "nnUNetv2_predict"
    assert argv[1:] == ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-d", "990", "-c", "2d",
                        "-f", "all", "-tr", "ATSOTrainer", "-p", "ATSOPlans_sagittal", "-device", "cpu",
                        "-npp", "2", "-nps", "3", "-chk", "checkpoint_final.pth", "--disable_progress_bar",
                        "--save_probabilities", "--disable_tta"]
    assert "--save_probabilities" not in predict_command("i", "o", 1, "2d", 0, "T", "P")


def test_nnunet_env_adds_paths_ext_trainer_run_config_and_gpu(tmp_path):
    paths = NnUNetPaths.under(tmp_path)
    base = {"PATH": "/usr/bin", "nnUNet_extTrainer": "/somewhere/else", "CUDA_VISIBLE_DEVICES": "3"}
    env = nnunet_env(paths, run_config=tmp_path / "run.json", base_env=base, gpu="1")
    assert env["nnUNet_raw"] == str(paths.raw)
    assert env["nnUNet_preprocessed"] == str(paths.preprocessed)
    assert env["nnUNet_results"] == str(paths.results)
    assert env["nnUNet_extTrainer"] == os.pathsep.join(["/somewhere/else", str(ext_trainer_dir())])
    assert env["ATSO_RUN_CONFIG"] == str((tmp_path / "run.json").resolve())
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["PATH"] == "/usr/bin"
    assert base == {"PATH": "/usr/bin", "nnUNet_extTrainer": "/somewhere/else", "CUDA_VISIBLE_DEVICES": "3"}
    # idempotent: the plugin folder is not added twice; unset options keep the base values
    again = nnunet_env(paths, base_env=env)
    assert again["nnUNet_extTrainer"] == env["nnUNet_extTrainer"]
    assert nnunet_env(paths, base_env=base)["CUDA_VISIBLE_DEVICES"] == "3"
    assert "ATSO_RUN_CONFIG" not in nnunet_env(paths, base_env={})
    assert nnunet_env(paths, base_env={})["nnUNet_extTrainer"] == str(ext_trainer_dir())


def test_the_ext_trainer_folder_ships_with_the_package():
    """setup.py's package_data installs the nnUNet_extTrainer folder where ext_trainer_dir() looks, and
    the folder holds one module only (nnU-Net imports every module there as a top-level module)."""
    import atso_nnunet.nnunet as package

    setup_py = (Path(__file__).resolve().parents[2] / "setup.py").read_text()
    folder = ext_trainer_dir().relative_to(Path(package.__file__).parent)
    assert f'"atso_nnunet.nnunet": ["{folder}/*.py"]' in setup_py
    assert sorted(p.name for p in ext_trainer_dir().iterdir() if p.name != "__pycache__") == ["atso_nnunet_trainers.py"]
