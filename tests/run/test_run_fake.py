"""The driver's batch loop, resume, adoption and report assembly, with a fake nnU-Net (fast)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from atso_nnunet.run.rundir import RunDir
from fake_nnunet import FakeNnUNetExecutor
from helpers import fake_plan


def test_atso_run_fills_every_report_cell_and_resume_runs_nothing(fake_run):
    full = {"atso": {"test_model": "ensemble", "final_labels": "last"}}  # every generation's subset models
    rep, ex, run = fake_run(fake_plan("atso", generations=2, method_options=full))
    # the executor was asked once, before any job, to start its workers (logs beside the jobs' logs)
    assert ex.warmed_up == [run.root / "logs"] and ex.ran_when_warmed == [0]
    # M0, 2 x 2 half-models, final: one training each (one view); predictions: one call per model
    assert sum(n.startswith(("g0__train", "g1__train", "g2__train", "final__train")) for n in ex.ran) == 6
    assert [g.generation for g in rep.generations] == [0, 1, 2]
    for g in rep.generations:
        assert g.reference_dsc > 0.9 and g.test_dsc > 0.9, g
        assert set(g.half_models) == {"M1@R1", "M1@R2", "M2@R1", "M2@R2"}
        assert all(v > 0.9 for v in g.half_models.values())
        assert g.empty_pseudo_labels == 0
    assert rep.generations[0].change is None and rep.generations[1].change == pytest.approx(1.0)
    assert set(rep.generations[1].agreement) == {"R1", "R2"}
    assert rep.final["test_dsc_mean"] > 0.9
    assert "majority vote of the ensemble" in rep.how_evaluated
    assert (run.root / "report.md").is_file() and json.loads((run.root / "report.json").read_text())["final"]
    # a second run finds every marker and runs no job
    _, ex2, _ = fake_run(fake_plan("atso", generations=2, method_options=full))
    assert ex2.ran == []


def test_a_lost_prediction_marker_reruns_that_model_and_view_only(fake_run):
    _, _, run = fake_run(fake_plan("stso"))
    run.marker("g1/predict/g1_all/axial/E").unlink()
    _, ex, _ = fake_run(fake_plan("stso"))
    assert ex.ran == ["g1_all__axial__predict_ER"]  # R and E of one model and view are one call


def test_supervised_run_reports_generation_zero_only(fake_run):
    rep, ex, _ = fake_run(fake_plan("supervised"))
    assert [g.generation for g in rep.generations] == [0]
    assert rep.final is None and rep.generations[0].test_dsc > 0.9
    assert not fake_run.ingested


def test_step_adopts_an_nnunet_output_made_by_hand(fake_run, tmp_path, nnunet_paths):
    plan = fake_plan("stso")
    # run only generation 0's training, by hand, outside the driver (as --dry-run prints it)
    rep, ex, run = fake_run(plan, only_step="g0/train/M0/axial")
    assert ex.ran == ["g0__train__M0__axial"]
    run.marker("g0/train/M0/axial").unlink()  # e.g. the team ran nnUNetv2_train itself
    _, ex2, _ = fake_run(plan, only_step="g0/predict/M0/axial/E")
    assert run.is_done("g0/train/M0/axial")
    assert json.loads(run.marker("g0/train/M0/axial").read_text())["adopted"] is True
    assert ex2.ran == ["M0__axial__predict_E"]


def test_metric_global_fills_the_cells_with_global_dsc(fake_run):
    rep, _, run = fake_run(fake_plan("stso", metric="global"))
    ev = json.loads((run.root / "eval" / "g1_all" / "E.json").read_text())
    assert rep.generations[1].test_dsc == pytest.approx(ev["global_dsc"])
    ref = json.loads((run.root / "eval" / "R_g1" / "R.json").read_text())
    assert rep.generations[1].reference_dsc == pytest.approx(ref["global_dsc"])


def test_the_reason_a_run_stopped_is_the_last_line_of_its_run_log(fake_run, tmp_path):
    """Read later, run.log says why the driver stopped (here: a training failed after its retries)."""
    from atso_nnunet.errors import StepFailedError

    class FailingTraining(FakeNnUNetExecutor):
        def run_batch(self, jobs):
            if any("__train__" in j.name for j in jobs):
                raise StepFailedError("1 job(s) failed after their retries:\n  - g0__train__M0__axial: exit code 1; "
                                      "log: /x/logs/g0/train/M0/axial.log")
            return super().run_batch(jobs)

    with pytest.raises(StepFailedError):
        fake_run(fake_plan("supervised"), executor=FailingTraining())
    last = RunDir(tmp_path / "run").log_file.read_text().splitlines()[-2:]
    assert "ERROR atso_nnunet.run.driver: driver stopped: StepFailedError: 1 job(s) failed" in last[0], last
    assert last[1] == "  - g0__train__M0__axial: exit code 1; log: /x/logs/g0/train/M0/axial.log"


def test_a_training_continued_with_c_is_recorded_in_its_marker_and_the_report(fake_run, tmp_path):
    """Issue 29: an interrupted training (its fold folder exists) is continued with --c; the record the
    trainer keeps of its resumes reaches the step's marker, report.json and report.md."""
    from atso_nnunet.nnunet.trainers.resumes import record_resume

    class ResumingTraining(FakeNnUNetExecutor):
        def _train(self, job):
            if "--c" in job.argv:    # what ATSOTrainer does when it continues from a checkpoint
                fold = next(Path(job.env["nnUNet_results"]).glob("*/*/fold_all"))
                record_resume(fold, 3, 0)
            super()._train(job)

    plan = fake_plan("stso")
    run = RunDir(tmp_path / "run")
    m0 = run.results_root("M0") / "Dataset991_FakeExp" / "ATSOTrainer__ATSOPlans_axial__2d" / "fold_all"
    m0.mkdir(parents=True)            # left by a driver killed while M0 trained
    rep, ex, run = fake_run(plan, executor=ResumingTraining())
    assert ex.argvs["g0__train__M0__axial"][-1] == "--c"
    marker = json.loads(run.marker("g0/train/M0/axial").read_text())
    assert (marker["resumed"], marker["resumed_at_epochs"], marker["resume_exact"]) == (True, [3], True)
    assert json.loads(run.marker("g1/train/g1_all/axial").read_text())["resumed"] is False
    assert rep.resumed_trainings == [{"step": "g0/train/M0/axial", "epochs": [3], "exact": True}]
    saved = json.loads((run.root / "report.json").read_text())
    assert saved["resumed_trainings"] == rep.resumed_trainings
    assert "Resumed trainings (1, continued with `nnUNetv2_train --c`" in (run.root / "report.md").read_text()


def test_a_run_without_interruptions_says_no_training_was_resumed(fake_run):
    rep, _, run = fake_run(fake_plan("supervised"))
    assert rep.resumed_trainings == []
    assert "No training was resumed" in (run.root / "report.md").read_text()


def test_dry_run_over_a_run_folder_marks_the_steps_done(fake_run, capsys):
    """What is left of a run: --dry-run on its folder marks the finished steps '(done)'."""
    plan = fake_plan("stso")
    fake_run(plan, only_step="g0/train/M0/axial")
    capsys.readouterr()
    fake_run(plan, dry_run=True)
    out = capsys.readouterr().out
    assert "this run folder has 1 of them done" in out
    assert "# g0/train/M0/axial (done)\n" in out and "# g1/train/g1_all/axial\n" in out
    assert "every step is done" not in out
    fake_run(plan)
    capsys.readouterr()
    fake_run(plan, dry_run=True)
    out = capsys.readouterr().out
    assert "every step is done: a run only rewrites the report" in out
    assert "--step report  # (done)" in out and "(1 independent step(s), all done)" in out


def test_pseudo_labels_matched_to_the_labeled_mean_volume(fake_run, nnunet_paths):
    """``pseudo_label_volume: labeled_mean``: each pseudo-label set is fused at one threshold, recorded in
    the fuse step's marker, that gives it the labeled cases' mean volume; the test predictions keep the argmax."""
    import numpy as np
    from atso_nnunet.io import read_array

    plan = fake_plan("stso", generations=1, views=("axial", "coronal"), fusion="mean",
                     pseudo_label_volume="labeled_mean")
    _, _, run = fake_run(plan, executor=FakeNnUNetExecutor(threshold=110.0))   # a teacher that misses half the organ
    match = json.loads(run.marker("g0/fuse/R_g0").read_text())["volume_match"]
    dataset = nnunet_paths.raw / "Dataset991_FakeExp"
    labeled = [np.count_nonzero(read_array(dataset / "labelsTr" / f"{c}.nii.gz")[0]) for c in plan.labeled]
    pseudo = [np.count_nonzero(read_array(f)[0]) for f in sorted((run.root / "pseudolabels" / "R_g0").glob("*.nii.gz"))]
    assert len(pseudo) == 4 and match["reached"]
    assert abs(np.mean(pseudo) - np.mean(labeled)) <= 0.05 * np.mean(labeled)
    assert match["threshold"] < 0.5 and match["argmax_ml"] < 0.8 * match["target_ml"]
    assert "volume_match" not in json.loads(run.marker("g0/fuse/M0/E").read_text())
