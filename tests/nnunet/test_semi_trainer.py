"""ATSOSemiTrainer: training set = labeled + pseudo-labelled cases, validation = labeled only."""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from atso_nnunet.data import layout
from atso_nnunet.errors import InputError
from atso_nnunet.nnunet.commands import nnunet_env, train_command
from atso_nnunet.paths import nnunet_environment
from atso_nnunet.nnunet.planning import plans_file
from atso_nnunet.nnunet.trainers import ATSOSemiTrainer
from atso_nnunet.nnunet.trainers.semi import FixedFractionDataLoader, SemiSupervisedDataset

pytest_plugins = ["fixtures_nnunet"]

LABELED = ["tiny_000", "tiny_001", "tiny_002"]
REFERENCE = ["tiny_003", "tiny_004", "tiny_005", "tiny_006"]
TINY_SCHEDULE = {"ATSO_NUM_EPOCHS": "1", "ATSO_ITERATIONS_PER_EPOCH": "2", "ATSO_VAL_ITERATIONS_PER_EPOCH": "1",
                 "ATSO_FINAL_VALIDATION": "0"}


@pytest.fixture(scope="module")
def planned(planned_tiny, tmp_path_factory):
    """The session's planned tiny dataset with a private copy of nnUNet_preprocessed (ingestion writes there)."""
    root = tmp_path_factory.mktemp("semi")
    preprocessed = root / "nnUNet_preprocessed"
    shutil.copytree(planned_tiny.paths.preprocessed, preprocessed)
    paths = dataclasses.replace(planned_tiny.paths, preprocessed=preprocessed, results=root / "nnUNet_results")
    return dataclasses.replace(planned_tiny, paths=paths)


def _pseudo_folder(planned, dst: Path, empty=("tiny_006",)) -> Path:
    """Reference ground truth as pseudo-labels; the cases in ``empty`` without foreground."""
    dst.mkdir(parents=True, exist_ok=True)
    for c in REFERENCE:
        src = planned.dataset_dir / layout.LABELS_REF / f"{c}.nii.gz"
        if c in empty:
            lab = sitk.ReadImage(str(src))
            blank = sitk.Image(lab.GetSize(), lab.GetPixelID())
            blank.CopyInformation(lab)
            sitk.WriteImage(blank, str(dst / f"{c}.nii.gz"))
        else:
            shutil.copy2(src, dst / f"{c}.nii.gz")
    return dst


def _trainer(planned, paths, view="axial"):
    plans = copy.deepcopy(json.loads(plans_file(paths, planned.dataset_name, planned.plans[view]).read_text()))
    plans["continue_training"] = False
    dataset_json = json.loads((paths.preprocessed / planned.dataset_name / "dataset.json").read_text())
    return ATSOSemiTrainer(plans, "2d", "all", dataset_json, torch.device("cpu"))


def _log(trainer) -> str:
    return Path(trainer.log_file).read_text()


@pytest.mark.parametrize("view", ["axial", "coronal", "sagittal"])
def test_trainer_sees_labeled_plus_pseudo_and_validates_on_labeled(planned, tmp_path, monkeypatch, view):
    paths = dataclasses.replace(planned.paths, results=tmp_path / "results")
    monkeypatch.setenv("ATSO_PSEUDOLABELS", str(_pseudo_folder(planned, tmp_path / "pl")))
    with nnunet_environment(paths):
        trainer = _trainer(planned, paths, view)
        dataset_tr, dataset_val = trainer.get_tr_and_val_datasets()
    assert isinstance(dataset_tr, SemiSupervisedDataset)
    assert dataset_tr.identifiers == LABELED + REFERENCE
    assert dataset_tr.labeled_identifiers == LABELED and dataset_tr.pseudo_identifiers == REFERENCE
    assert dataset_val.identifiers == LABELED  # never pseudo-labels, never test cases
    assert trainer.pseudo_labels.empty_cases == ("tiny_006",)
    for case in LABELED + REFERENCE:
        data, seg, seg_prev, props = dataset_tr.load_case(case)
        assert data.shape == seg.shape and seg_prev is None
        assert (len(props["class_locations"][1]) > 0) == (case != "tiny_006")
        assert dataset_tr.is_pseudo(case) == (case in REFERENCE)
    log = _log(trainer)
    assert "3 labeled + 4 pseudo-labelled case(s) (1 empty pseudo-label(s): tiny_006)" in log
    assert "validation set: 3 labeled case(s) only (fold 'all'" in log


def test_case_subset_and_refusals(planned, tmp_path, monkeypatch):
    paths = dataclasses.replace(planned.paths, results=tmp_path / "results")
    folder = _pseudo_folder(planned, tmp_path / "pl", empty=())
    monkeypatch.setenv("ATSO_PSEUDOLABELS", str(folder))
    monkeypatch.setenv("ATSO_PSEUDOLABEL_CASES", "tiny_004,tiny_005")
    with nnunet_environment(paths):
        dataset_tr, _ = _trainer(planned, paths).get_tr_and_val_datasets()
    assert dataset_tr.identifiers == LABELED + ["tiny_004", "tiny_005"]

    # a test case in the folder is refused, naming it
    shutil.copy2(planned.dataset_dir / layout.LABELS_TS / "tiny_008.nii.gz", folder)
    with nnunet_environment(paths), pytest.raises(InputError, match="tiny_008.*TEST"):
        _trainer(planned, paths).get_tr_and_val_datasets()

    monkeypatch.delenv("ATSO_PSEUDOLABELS")
    monkeypatch.delenv("ATSO_PSEUDOLABEL_CASES")
    with nnunet_environment(paths), pytest.raises(InputError, match="ATSO_PSEUDOLABELS"):
        _trainer(planned, paths).get_tr_and_val_datasets()


def test_fixed_labeled_fraction_per_batch(planned, tmp_path, monkeypatch):
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

    paths = dataclasses.replace(planned.paths, results=tmp_path / "results")
    monkeypatch.setenv("ATSO_PSEUDOLABELS", str(_pseudo_folder(planned, tmp_path / "pl")))
    with nnunet_environment(paths):
        trainer = _trainer(planned, paths)
        dataset_tr, _ = trainer.get_tr_and_val_datasets()
    patch = trainer.configuration_manager.patch_size
    np.random.seed(0)
    loader = FixedFractionDataLoader(dataset_tr, 4, patch, patch, trainer.label_manager,
                                     oversample_foreground_percent=0.33, labeled_fraction=0.5)
    for _ in range(20):
        keys = loader.get_indices()
        assert sum(k in LABELED for k in keys) == 2 and len(keys) == 4
    batch = next(loader)
    assert batch["data"].shape[:2] == (4, 1) and batch["target"].shape[0] == 4
    # fractional shares are exact on average (random rounding)
    loader.labeled_fraction = 0.3
    counts = [sum(k in LABELED for k in loader.get_indices()) for _ in range(2000)]
    assert set(counts) <= {1, 2} and abs(np.mean(counts) / 4 - 0.3) < 0.03
    # default: nnU-Net's own loader, uniform over all 7 cases
    stock = nnUNetDataLoader(dataset_tr, 4, patch, patch, trainer.label_manager)
    drawn = Counter(k for _ in range(2000) for k in stock.get_indices())
    assert set(drawn) == set(LABELED + REFERENCE)
    assert abs(sum(drawn[k] for k in LABELED) / 8000 - 3 / 7) < 0.03


@pytest.mark.slow
def test_tiny_semi_training_in_process(planned, tmp_path, monkeypatch):
    """One epoch of two iterations with pseudo-labels (and a fixed labeled fraction) in this process."""
    paths = dataclasses.replace(planned.paths, results=tmp_path / "results")
    for k, v in TINY_SCHEDULE.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.setenv("ATSO_PSEUDOLABELS", str(_pseudo_folder(planned, tmp_path / "pl")))
    monkeypatch.setenv("ATSO_LABELED_FRACTION", "0.5")
    t0 = time.monotonic()
    with nnunet_environment(paths):
        trainer = _trainer(planned, paths, "coronal")
        trainer.run_training()
    print(f"tiny semi-supervised in-process training: {time.monotonic() - t0:.1f} s")
    fold = paths.results / planned.dataset_name / "ATSOSemiTrainer__ATSOPlans_coronal__2d" / "fold_all"
    assert (fold / "checkpoint_final.pth").is_file()
    assert isinstance(trainer.dataloader_train.data_loader, FixedFractionDataLoader)
    assert "sampling labeled fraction 0.5 per batch" in _log(trainer)


@pytest.mark.slow
@pytest.mark.cli
def test_tiny_semi_training_with_nnunet_cli(planned, tmp_path):
    """``nnUNetv2_train 990 2d all -tr ATSOSemiTrainer -p ATSOPlans_axial`` ingests on first use."""
    paths = dataclasses.replace(planned.paths, results=tmp_path / "results")
    folder = _pseudo_folder(planned, tmp_path / "fresh_generation")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ATSO_", "nnUNet_extTrainer"))}
    env = nnunet_env(paths, base_env=base)
    env.update(TINY_SCHEDULE, nnUNet_n_proc_DA="0", ATSO_PSEUDOLABELS=str(folder))
    t0 = time.monotonic()
    proc = subprocess.run(train_command(planned.dataset_id, "2d", "all", "ATSOSemiTrainer", "ATSOPlans_axial"),
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"CLI tiny semi-supervised training: {time.monotonic() - t0:.1f} s")
    fold = paths.results / planned.dataset_name / "ATSOSemiTrainer__ATSOPlans_axial__2d" / "fold_all"
    assert (fold / "checkpoint_final.pth").is_file()
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert "3 labeled + 4 pseudo-labelled case(s) (1 empty pseudo-label(s): tiny_006)" in log
    cache = paths.preprocessed / planned.dataset_name / "atso_pseudolabels" / "ATSOPlans_axial_2d"
    assert any(json.loads((d / "complete.json").read_text())["pseudo_label_dir"] == str(folder.resolve())
               for d in cache.iterdir() if (d / "complete.json").is_file())
