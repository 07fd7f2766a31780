"""Issue 28 end to end with a fake nnU-Net: the drift monitor warns on a planted shrinking chain and not
on a stable run, reads no label, the stability filter leaves cases out of the next trainings, and the
report's "Without labels" section says all of it."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from atso_nnunet.run import steps as runners
from atso_nnunet.data import layout
from atso_nnunet.io import read_array, write_array

from fake_nnunet import FakeNnUNetExecutor
from helpers import fake_plan

FULL = {"atso": {"test_model": "ensemble", "final_labels": "last"}}  # every generation's subset models


def _shrink_pseudo_labels(monkeypatch, factor=0.85):
    """Plant a chain: every fused R_g{t} keeps only the first factor^t of its foreground voxels."""
    fuse = runners.PLUGIN_RUNNERS["fuse"]

    def shrinking(ctx, step):
        out = fuse(ctx, step)
        if step.output.is_pseudo_labels:
            keep = factor ** step.generation
            for case in step.cases:
                path = ctx.path(step.output) / f"{case}{layout.FILE_ENDING}"
                array, geometry = read_array(path)
                idx = np.flatnonzero(array > 0)
                array.reshape(-1)[idx[int(round(keep * len(idx))):]] = 0
                write_array(array, geometry, path)
        return out

    monkeypatch.setitem(runners.PLUGIN_RUNNERS, "fuse", shrinking)


def test_a_planted_shrinking_chain_warns_in_the_log_and_the_report(fake_run, monkeypatch):
    _shrink_pseudo_labels(monkeypatch)
    rep, _, run = fake_run(fake_plan("stso", generations=3, ship_generation="before_drift"))
    ratios = [g.volume_vs_m0 for g in rep.generations]
    assert ratios == [1.0] + [pytest.approx(0.85 ** t, abs=0.02) for t in (1, 2, 3)]
    assert all(g.vote_vs_views == pytest.approx(0.85 ** g.generation, abs=0.02) for g in rep.generations)
    log = run.log_file.read_text()
    assert "WARNING atso_nnunet.run.steps: R_g2: pseudo-labels lost 28 % of their volume over two generations" in log
    assert "R_g1: pseudo-labels lost" not in log
    data = json.loads((run.root / "report.json").read_text())["without_labels"]
    assert data["drift"]["drifted"] and data["drift"]["first_generation"] == 2
    assert data["ship"] == {"rule": "before_drift", "generation": 1, "before_drift": 1, "model": "g1_all",
                            "test_dsc": rep.generations[1].test_dsc}
    md = (run.root / "report.md").read_text()
    assert "## Without labels" in md and "**Drift (warning).** Pseudo-labels lost 28 % of their volume" in md
    assert "would ship G1; this plan's rule 'before_drift' ships G1" in md


def test_a_stable_run_does_not_warn(fake_run):
    rep, _, run = fake_run(fake_plan("atso", generations=2, method_options=FULL))
    assert [g.volume_vs_m0 for g in rep.generations] == [1.0, pytest.approx(1.0), pytest.approx(1.0)]
    assert "pseudo-labels lost" not in run.log_file.read_text()
    data = json.loads((run.root / "report.json").read_text())["without_labels"]
    assert not data["drift"]["drifted"] and data["ship"]["generation"] == 2 == data["ship"]["before_drift"]
    assert "**Drift (none).** No drift" in (run.root / "report.md").read_text()


def test_the_pseudo_labels_are_measured_against_the_labeled_cases_mean_volume(fake_run, nnunet_paths):
    """A teacher that misses half the organ shows it without any label of R: 'vs labeled' far below 1."""
    from atso_nnunet.monitors.drift import foreground_volume

    rep, _, run = fake_run(fake_plan("stso"), executor=FakeNnUNetExecutor(threshold=110.0))
    labeled = [foreground_volume(nnunet_paths.raw / "Dataset991_FakeExp" / "labelsTr" / f"tiny_00{i}.nii.gz")[1]
               for i in range(3)]
    g0 = rep.generations[0]
    assert g0.volume_vs_labeled == pytest.approx(g0.pseudo_label_volume_ml / 4 / (sum(labeled) / 3))
    assert g0.volume_vs_labeled < 0.8
    assert json.loads((run.root / "report.json").read_text())["without_labels"]["vs_labeled"]["0"] == \
        pytest.approx(g0.volume_vs_labeled)
    assert f"| {100 * g0.volume_vs_labeled:.0f} % |" in (run.root / "report.md").read_text()


def test_the_monitors_read_no_label(fake_run, nnunet_paths, tmp_path):
    """With the test and reference labels moved away, the label-free monitors give the same figures."""
    plan = fake_plan("atso", generations=2, method_options=FULL, stability_filter={"drop_fraction": 0.25})
    _, _, run = fake_run(plan)
    monitors = sorted((run.root / "eval" / "monitors").glob("*.json"))
    before = {p.name: json.loads(p.read_text()) for p in monitors}
    assert {"volume_R_g0.json", "volume_R_g2.json", "stability_R_g1.json"} <= set(before)
    dataset = nnunet_paths.raw / "Dataset991_FakeExp"
    for folder in (layout.LABELS_REF, layout.LABELS_TS):
        shutil.move(str(dataset / folder), str(tmp_path / f"away_{folder}"))
    for p in monitors:
        p.unlink()
    for step_marker in (run.root / "state").rglob("*.done"):
        if "/monitor/" in step_marker.as_posix():
            step_marker.unlink()
    _, ex, _ = fake_run(plan)
    assert ex.ran == []  # no nnU-Net call: the monitors read what the run kept
    after = {p.name: json.loads(p.read_text()) for p in (run.root / "eval" / "monitors").glob("*.json")}
    assert after == before


def test_the_stability_filter_leaves_the_most_changed_cases_out_of_the_next_trainings(fake_run, monkeypatch):
    """Generation 1 relabels one case very differently; the next trainings do without it."""
    fuse = runners.PLUGIN_RUNNERS["fuse"]

    def unstable(ctx, step):
        out = fuse(ctx, step)
        if step.output.is_pseudo_labels and step.generation == 1:
            path = ctx.path(step.output) / f"tiny_004{layout.FILE_ENDING}"
            array, geometry = read_array(path)
            write_array(np.zeros_like(array), geometry, path)  # lost the whole organ
        return out

    monkeypatch.setitem(runners.PLUGIN_RUNNERS, "fuse", unstable)
    plan = fake_plan("atso", generations=2, method_options=FULL, stability_filter={"drop_fraction": 0.25})
    rep, _, run = fake_run(plan)
    # it changes most again at G2 (its organ is back): both rounds leave it out
    assert rep.generations[1].unstable_cases == ["tiny_004"] == rep.generations[2].unstable_cases
    for step_id in ("g2/train/g2_h1/axial", "g2/train/g2_h2/axial"):
        config = json.loads(run.run_config(step_id).read_text())
        assert "tiny_004" not in config["pseudo_label_cases"], step_id
    # R_g0 has no earlier round: generation 1 trains on every case of its subset
    first = [json.loads(run.run_config(f"g1/train/g1_h{k}/axial").read_text())["pseudo_label_cases"] for k in (1, 2)]
    assert sorted(first[0] + first[1]) == ["tiny_003", "tiny_004", "tiny_005", "tiny_006"]
    final = json.loads(run.run_config("final/train/final/axial").read_text())  # learns from R_g2
    assert final["pseudo_label_cases"] == ["tiny_003", "tiny_005", "tiny_006"]
    md = (run.root / "report.md").read_text()
    assert "**Stability filter.**" in md and "G1: tiny_004; G2: tiny_004" in md
