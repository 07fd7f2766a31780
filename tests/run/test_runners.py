"""How steps run: nnU-Net job construction, artefact paths, and the in-process steps."""
from __future__ import annotations

import json

import numpy as np
import pytest

from atso_nnunet.run.driver import DriverOptions, make_context
from atso_nnunet.plan import plan_from_dict, reference_subsets
from atso_nnunet.io import read_array, write_array
from atso_nnunet.run.steps import (predict_job, release_probabilities, run_evaluate, run_fuse, run_monitor,
                                  train_job)
from atso_nnunet.schedule import LabelSet, Model, Monitor, Prediction, Score, build_schedule, steps_by_id
from atso_nnunet.methods import get_method

from helpers import write_tiny_dataset


@pytest.fixture
def ctx_steps(tmp_path, nnunet_paths):
    write_tiny_dataset(nnunet_paths.raw, dataset_id=991, name="RunExp")
    plan = plan_from_dict({
        "name": "runners", "sources": ["Dataset990_Tiny"], "dataset_id": 991, "dataset_name": "RunExp",
        "labeled": ["tiny_000", "tiny_001", "tiny_002"], "reference": ["tiny_003", "tiny_004", "tiny_005", "tiny_006"],
        "test": ["tiny_007", "tiny_008"], "method": "self", "generations": 2, "views": ["axial", "sagittal"],
        "training": {"num_epochs": 3, "student_initial_lr": 0.001, "test_time_augmentation": False}})
    ctx = make_context(plan, DriverOptions(run_dir=tmp_path / "run", paths=nnunet_paths))
    return ctx, steps_by_id(build_schedule(plan, reference_subsets(plan), get_method(plan.method)))


def test_train_job_of_a_self_learning_student(ctx_steps):
    ctx, steps = ctx_steps
    step = steps["g2/train/g2_all/sagittal"]
    job = train_job(ctx, step)
    assert job.argv[1:4] == ["991", "2d", "all"]
    assert job.argv[job.argv.index("-tr") + 1] == "ATSOSemiTrainer"
    assert job.argv[job.argv.index("-p") + 1] == "ATSOPlans_sagittal"
    assert "--c" not in job.argv and "--c" in job.resume_argv
    assert job.env["nnUNet_results"] == str(ctx.run.results_root("g2_all"))
    assert job.env["WANDB_NAME"] == "g2/train/g2_all/sagittal"   # the W&B run's name, when nnU-Net logs to W&B
    # done once nnU-Net's final validation (on by default) has written its summary
    assert job.done_marker == ctx.model_folder(step.output) / "validation" / "summary.json"
    config = json.loads(ctx.run.run_config(step.id).read_text())
    # the self-learning role: fine-tunes (half the base epochs) at its own learning rate
    assert config["num_epochs"] == 2 and config["initial_lr"] == 0.001
    assert config["init"] == "checkpoint"
    assert config["init_checkpoint"].endswith(
        "models/g1_all/nnUNet_results/Dataset991_RunExp/ATSOSemiTrainer__ATSOPlans_sagittal__2d/fold_all/checkpoint_final.pth")
    assert config["pseudo_label_dir"] == str(ctx.run.root / "pseudolabels" / "R_g1")
    assert config["pseudo_label_cases"] == ["tiny_003", "tiny_004", "tiny_005", "tiny_006"]


def test_m0_job_uses_the_supervised_trainer_and_base_settings(ctx_steps):
    ctx, steps = ctx_steps
    job = train_job(ctx, steps["g0/train/M0/axial"])
    assert job.argv[job.argv.index("-tr") + 1] == "ATSOTrainer"
    config = json.loads(ctx.run.run_config("g0/train/M0/axial").read_text())
    assert config["num_epochs"] == 3 and config["initial_lr"] is None and config["pseudo_label_dir"] is None


def test_a_training_without_final_validation_is_done_with_its_final_checkpoint(ctx_steps):
    ctx, steps = ctx_steps
    ctx.training = lambda role: {"num_epochs": 3, "final_validation": False}
    job = train_job(ctx, steps["g0/train/M0/axial"])
    assert job.done_marker == ctx.model_folder(steps["g0/train/M0/axial"].output) / "checkpoint_final.pth"


def test_predict_job_covers_r_and_e_of_one_model_and_view(ctx_steps):
    ctx, steps = ctx_steps
    group = [steps["g1/predict/g1_all/axial/R"], steps["g1/predict/g1_all/axial/E"]]
    job = predict_job(ctx, group)
    inputs = ctx.run.inputs("ER")
    assert sorted(p.name for p in inputs.iterdir()) == [f"tiny_00{i}_0000.nii.gz" for i in range(3, 9)]
    assert job.argv[job.argv.index("-o") + 1] == str(ctx.run.predictions("g1_all", "axial"))
    assert "--disable_tta" in job.argv
    with pytest.raises(ValueError):
        predict_job(ctx, [steps["g1/predict/g1_all/axial/R"], steps["g1/predict/g1_all/sagittal/E"]])


def test_artefacts_resolve_to_the_run_folder(ctx_steps):
    ctx, _ = ctx_steps
    root = ctx.run.root
    m = Model("g1_all", "axial", "ATSOSemiTrainer")
    assert ctx.path(Prediction(m, "R")) == ctx.path(Prediction(m, "E")) == root / "predictions" / "g1_all" / "axial"
    assert ctx.path(LabelSet("R_g1")) == root / "pseudolabels" / "R_g1"
    assert ctx.path(LabelSet("g1_all", "E")) == root / "fused" / "g1_all" / "E"
    assert ctx.path(Score("R_g1", "R_h2")) == root / "eval" / "R_g1" / "R_h2.json"
    assert ctx.path(Monitor("change_R_g1")) == root / "eval" / "monitors" / "change_R_g1.json"
    assert ctx.path(m).name == "fold_all"


def _fake_predictions(ctx, model, view, cases, shift=0, confidence=0.9):
    """Ground truth shifted along x as a model's prediction, with probabilities of ``confidence``."""
    out = ctx.path(Prediction(Model(model, view, "ATSOSemiTrainer"), "R"))
    for c in cases:
        lab, geom = read_array(ctx.dataset_dir / ("labelsRef" if c in ctx.plan.reference else "labelsTs") / f"{c}.nii.gz")
        lab = np.roll(lab, shift, axis=2)
        write_array(lab, geom, out / f"{c}.nii.gz")
        p1 = np.where(lab > 0, confidence, 1 - confidence).astype(np.float32)
        np.savez_compressed(out / f"{c}.npz", probabilities=np.stack([1 - p1, p1]))


def test_two_voters_tie_is_broken_by_probability(ctx_steps):
    """A planted tie: axial says organ shifted right, sagittal shifted left; where they disagree
    the more confident one (axial) must win, not background."""
    ctx, steps = ctx_steps
    R = list(ctx.plan.reference)
    _fake_predictions(ctx, "g1_all", "axial", R, shift=2, confidence=0.95)
    _fake_predictions(ctx, "g1_all", "sagittal", R, shift=-2, confidence=0.6)
    fuse = steps["g1/fuse/R_g1"]
    assert all(len(g.predictions) == 2 for g in fuse.fuse_groups)
    assert steps["g1/predict/g1_all/axial/R"].save_probabilities
    info = run_fuse(ctx, fuse)
    assert info["tie_break"] == "probability"
    fused, _ = read_array(ctx.path(LabelSet("R_g1")) / f"{R[0]}.nii.gz")
    axial, _ = read_array(ctx.path(Prediction(Model("g1_all", "axial", "x"), "R")) / f"{R[0]}.nii.gz")
    assert np.array_equal(fused, axial)  # background would be the intersection
    # once every fusion reading them is done, the probabilities are deleted
    ctx.run.mark_done("g1/predict/g1_all/axial/R", 0.0)
    ctx.run.mark_done("g1/predict/g1_all/sagittal/R", 0.0)
    assert release_probabilities(ctx, list(steps.values())) == 0  # fuse not marked yet
    ctx.run.mark_done("g1/fuse/R_g1", 0.0)
    assert release_probabilities(ctx, list(steps.values())) > 0
    assert not list(ctx.path(Prediction(Model("g1_all", "axial", "x"), "R")).glob("*.npz"))


def test_fuse_evaluate_and_monitors_in_process(ctx_steps):
    ctx, steps = ctx_steps
    R = list(ctx.plan.reference)
    _fake_predictions(ctx, "g1_all", "axial", R)
    _fake_predictions(ctx, "g1_all", "sagittal", R, shift=1)
    _fake_predictions(ctx, "M0", "axial", R, shift=3)
    _fake_predictions(ctx, "M0", "sagittal", R, shift=3)
    assert run_fuse(ctx, steps["g0/fuse/R_g0"])["written"] == 4
    assert run_fuse(ctx, steps["g1/fuse/R_g1"])["written"] == 4
    res = run_evaluate(ctx, steps["g1/evaluate/R_g1/R"])
    assert res["available"] and 0.8 < res["mean_dsc"] <= 1.0
    change = run_monitor(ctx, steps["g1/monitor/change_R_g1"])["value"]
    assert 0 < change < 1
    assert run_monitor(ctx, steps["g1/monitor/empty_R_g1"])["value"] == 0


def test_oracle_trains_on_ground_truth_with_the_plans_label_map(tmp_path, nnunet_paths, monkeypatch):
    """MSD-like transfer: R's ground truth has tumour 2, scored as pancreas ({2: 1}); the oracle's
    training labels must be mapped the same way (the dataset's labels are {0, 1}, so ingesting
    labelsRef as it is was refused: 'label values 2 are not in dataset.json labels [0, 1]')."""
    from atso_nnunet.pseudolabels import ingest as pseudolabels
    from atso_nnunet.pseudolabels.ingest_case import _check_case
    from atso_nnunet.run import steps as runners
    from atso_nnunet.data import layout
    from atso_nnunet.schedule import GroundTruth

    ds = write_tiny_dataset(nnunet_paths.raw, dataset_id=991, name="RunExp")
    gt_file = layout.label_path(ds, layout.LABELS_REF, "tiny_003")
    lab, geom = read_array(gt_file)
    lesion = np.zeros_like(lab, dtype=bool)
    lesion[np.nonzero(lab)[0][0], np.nonzero(lab)[1][0], np.nonzero(lab)[2][0]] = True
    lab[lesion] = 2
    gt_file.unlink()  # the dataset may hold links to a source: never write through them
    write_array(lab, geom, gt_file)
    image = layout.image_path(ds, layout.IMAGES_REF, "tiny_003")
    assert _check_case("tiny_003", str(gt_file), str(image), (0, 1))  # refused as it is

    plan = plan_from_dict({
        "name": "oracle", "sources": ["Dataset990_Tiny"], "dataset_id": 991, "dataset_name": "RunExp",
        "labeled": ["tiny_000", "tiny_001", "tiny_002"], "reference": ["tiny_003", "tiny_004", "tiny_005", "tiny_006"],
        "test": ["tiny_007", "tiny_008"], "method": "oracle", "generations": 1, "views": ["axial"],
        "eval_label_map": {"2": 1}})
    ctx = make_context(plan, DriverOptions(run_dir=tmp_path / "run", paths=nnunet_paths))
    steps = steps_by_id(build_schedule(plan, reference_subsets(plan), get_method(plan.method)))
    assert ctx.path(GroundTruth()) == ctx.run.mapped_truth()

    seen = {}

    def fake_ingest(paths, dataset, plans, configuration, folder, cases=None, num_processes=1):
        seen["folder"], seen["cases"] = folder, list(cases)
        return pseudolabels.IngestResult(folder, tuple(cases), ())

    monkeypatch.setattr(pseudolabels, "ingest_pseudolabels", fake_ingest)
    runners.run_ingest(ctx, next(s for s in steps.values() if s.kind == "ingest"))
    assert seen["folder"] == ctx.run.mapped_truth()
    assert sorted(seen["cases"]) == ["tiny_003", "tiny_004", "tiny_005", "tiny_006"]
    mapped, mapped_geom = read_array(ctx.run.mapped_truth() / "tiny_003.nii.gz")
    assert mapped_geom.matches(geom) and set(np.unique(mapped)) == {0, 1}
    assert mapped[lesion].tolist() == [1] and np.array_equal(mapped > 0, lab > 0)
    mapped_file = str(ctx.run.mapped_truth() / "tiny_003.nii.gz")
    assert _check_case("tiny_003", mapped_file, str(image), (0, 1)) == []
    # the oracle's trainer reads the same mapped folder
    train = next(s for s in steps.values() if s.kind == "train" and s.output.name == "oracle")
    train_job(ctx, train)
    assert json.loads(ctx.run.run_config(train.id).read_text())["pseudo_label_dir"] == str(ctx.run.mapped_truth())


def test_ground_truth_without_label_map_is_read_in_place(ctx_steps):
    from atso_nnunet.schedule import GroundTruth

    ctx, _ = ctx_steps
    assert ctx.path(GroundTruth()) == ctx.dataset_dir / "labelsRef"
