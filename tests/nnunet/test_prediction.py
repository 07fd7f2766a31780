"""Tri-view prediction with a tiny nnU-Net model trained in-process on CPU.

The model is trained once per module with nnU-Net's stock ``nnUNetTrainer`` (1 epoch x 2
iterations, 3-stage U-Net with 16 features), so these tests do not depend on atso_nnunet's
planning or trainers.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from atso_nnunet.nnunet import predict as prediction
from atso_nnunet.data import layout
from atso_nnunet.errors import InputError
from atso_nnunet.io import Geometry, read_array, write_array
from atso_nnunet.paths import NnUNetPaths, nnunet_environment
from atso_nnunet.nnunet.predict import predict_tri_view, predict_view
from helpers import write_tiny_dataset

DATASET_ID = 990
_C, _S = np.cos(np.pi / 7), np.sin(np.pi / 7)
ODD_GEOMETRY = dict(origin=(10.5, -20.25, 3.0), direction=(_C, 0.0, -_S, 0.0, 1.0, 0.0, _S, 0.0, _C))


def _shrink_plans(plans_file: Path, configuration: str = "2d", n_stages: int = 3, max_features: int = 16,
                  batch_size: int = 2) -> None:
    plans = json.loads(plans_file.read_text())
    cfg = plans["configurations"][configuration]
    arch = cfg["architecture"]["arch_kwargs"]
    arch["n_stages"] = n_stages
    arch["features_per_stage"] = [min(f, max_features) for f in arch["features_per_stage"][:n_stages]]
    for key in ("kernel_sizes", "strides", "n_conv_per_stage"):
        arch[key] = arch[key][:n_stages]
    arch["n_conv_per_stage_decoder"] = arch["n_conv_per_stage_decoder"][: n_stages - 1]
    cfg["batch_size"] = batch_size
    plans_file.write_text(json.dumps(plans, indent=2))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model folder, raw dataset folder) of a tiny 2D model of Dataset990_Tiny."""
    import torch

    root = tmp_path_factory.mktemp("nnunet")
    paths = NnUNetPaths.under(root)
    paths.makedirs()
    dataset = write_tiny_dataset(paths.raw, dataset_id=DATASET_ID, n_labeled=3, n_reference=0, n_test=2)
    with nnunet_environment(paths), pytest.MonkeyPatch.context() as mp:
        from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (
            extract_fingerprint_dataset, plan_experiment_dataset, preprocess_dataset)
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        extract_fingerprint_dataset(DATASET_ID, num_processes=1, verbose=False, show_progress_bar=False)
        _, plans_id = plan_experiment_dataset(DATASET_ID, ExperimentPlanner)
        plans_file = paths.preprocessed / dataset.name / f"{plans_id}.json"
        _shrink_plans(plans_file)
        preprocess_dataset(DATASET_ID, plans_id, ["2d"], [1], show_progress_bar=False)

        mp.setenv("nnUNet_n_proc_DA", "0")  # single-threaded augmentation (training only)
        plans = json.loads(plans_file.read_text())
        plans["continue_training"] = False  # popped by the trainer constructor
        dataset_json = json.loads((paths.preprocessed / dataset.name / "dataset.json").read_text())
        trainer = nnUNetTrainer(plans, "2d", "all", dataset_json, device=torch.device("cpu"))
        trainer.num_epochs = 1
        trainer.num_iterations_per_epoch = 2
        trainer.num_val_iterations_per_epoch = 1
        trainer.run_training()  # no final validation: that is run_training()'s caller's job
        model_folder = Path(trainer.output_folder).parent
    return model_folder, dataset


@pytest.fixture
def test_inputs(trained, tmp_path):
    """The two test images, re-stamped with a non-zero origin and an oblique direction."""
    _, dataset = trained
    files = {}
    for case in layout.case_ids_in(dataset / layout.IMAGES_TS):
        arr, g = read_array(layout.image_path(dataset, layout.IMAGES_TS, case))
        odd = Geometry(g.size, g.spacing, ODD_GEOMETRY["origin"], ODD_GEOMETRY["direction"])
        files[case] = [write_array(arr, odd, tmp_path / "images" / f"{case}_0000.nii.gz")]
    return files


def _geometry(path: Path) -> Geometry:
    return Geometry.of(sitk.ReadImage(str(path)))


@pytest.mark.slow
def test_predict_view_outputs_in_input_geometry(trained, test_inputs, tmp_path, monkeypatch):
    model_folder, _ = trained
    out = tmp_path / "axial"
    written = predict_view(model_folder, test_inputs, out, save_probabilities=True, use_mirroring=False,
                           progress=False)
    assert written == [out / f"{c}.nii.gz" for c in test_inputs]
    for case, files in test_inputs.items():
        seg, g = read_array(out / f"{case}.nii.gz")
        assert g == _geometry(files[0])                      # exactly the input's geometry
        assert set(np.unique(seg)) <= {0, 1}
        with np.load(out / f"{case}.npz") as npz:
            prob = npz["probabilities"]
        assert prob.shape == (2,) + seg.shape                # (C, z, y, x), the input's array order
        np.testing.assert_allclose(prob.sum(0), 1.0, atol=1e-4)
        np.testing.assert_array_equal(prob.argmax(0), seg)
        assert (out / f"{case}.pkl").is_file()
    assert not list(out.glob(".staging-*"))
    assert json.loads((out / "dataset.json").read_text())["labels"] == {"background": 0, "pancreas": 1}

    # resume: nothing left to do, so the model is not even loaded
    monkeypatch.setattr(prediction, "load_predictor", lambda *a, **k: pytest.fail("model loaded"))
    assert predict_view(model_folder, test_inputs, out, save_probabilities=True, progress=False) == written


@pytest.mark.slow
def test_predict_tri_view_fused_geometry(trained, test_inputs, tmp_path):
    model_folder, _ = trained
    views = {"axial": model_folder, "coronal": model_folder, "sagittal": model_folder}
    fused = predict_tri_view(views, test_inputs, tmp_path / "work", tmp_path / "fused", use_mirroring=False,
                             progress=False)
    assert fused == [tmp_path / "fused" / f"{c}.nii.gz" for c in test_inputs]
    for case, files in test_inputs.items():
        seg, g = read_array(tmp_path / "fused" / f"{case}.nii.gz")
        assert g == _geometry(files[0])
        assert _geometry(tmp_path / "work" / "coronal" / f"{case}.nii.gz") == g
        # the same model three times: the vote reproduces the single prediction
        np.testing.assert_array_equal(seg, read_array(tmp_path / "work" / "axial" / f"{case}.nii.gz")[0])
        assert not (tmp_path / "work" / "axial" / f"{case}.npz").exists()


def test_predict_view_input_errors(tmp_path):
    with pytest.raises(InputError, match="missing.nii.gz not found"):
        predict_view(tmp_path / "model", {"c": [tmp_path / "missing.nii.gz"]}, tmp_path / "out", progress=False)
    with pytest.raises(InputError, match="no cases"):
        predict_view(tmp_path / "model", {}, tmp_path / "out", progress=False)
    image = write_array(np.zeros((4, 4, 4), np.int16), Geometry((4, 4, 4), (1, 1, 1), (0, 0, 0),
                                                              (1, 0, 0, 0, 1, 0, 0, 0, 1)), tmp_path / "i.nii.gz")
    (tmp_path / "model").mkdir()
    with pytest.raises(InputError) as e:
        predict_view(tmp_path / "model", {"c": [image]}, tmp_path / "out", progress=False)
    assert "plans.json" in str(e.value) and str(Path("fold_all") / "checkpoint_final.pth") in str(e.value)


def test_predict_view_skips_finished_cases_without_loading(tmp_path, monkeypatch):
    image = write_array(np.zeros((4, 4, 4), np.int16), Geometry((4, 4, 4), (1, 1, 1), (0, 0, 0),
                                                              (1, 0, 0, 0, 1, 0, 0, 0, 1)), tmp_path / "i.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    (out / "c.nii.gz").write_bytes(b"done")
    monkeypatch.setattr(prediction, "load_predictor", lambda *a, **k: pytest.fail("model loaded"))
    assert predict_view(tmp_path / "model", {"c": [image]}, out, progress=False) == [out / "c.nii.gz"]
    # with probabilities requested, the missing .npz makes the case unfinished
    loads = []

    def fake_load(*args, **kwargs):
        loads.append(args[0])
        raise InputError("stop after the load")

    monkeypatch.setattr(prediction, "load_predictor", fake_load)
    with pytest.raises(InputError, match="stop after the load"):
        predict_view(tmp_path / "model", {"c": [image]}, out, save_probabilities=True, progress=False)
    assert loads == [tmp_path / "model"]


def test_resolve_trainer_class_falls_back_to_nnunet_trainer():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    assert prediction.resolve_trainer_class("nnUNetTrainer") is nnUNetTrainer
    assert prediction.resolve_trainer_class("NoSuchTrainerAnywhere") is nnUNetTrainer
