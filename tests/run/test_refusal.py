"""Issue 29: a refused command leaves nothing behind (run/refusal.py): no run folder, no empty nnU-Net
folders, no experiment dataset, when the checks that need the data built refuse the run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atso_nnunet.cli.run import main
from atso_nnunet.errors import InputError
from atso_nnunet.io import read_array, write_array
from atso_nnunet.run.refusal import highest_missing, removed_on_refusal

from helpers import tiny_plan, write_tiny_dataset


def tree(root: Path) -> list:
    return sorted(str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in root.rglob("*"))


def test_highest_missing(tmp_path):
    assert highest_missing(tmp_path) is None
    assert highest_missing(tmp_path / "a" / "b" / "c") == tmp_path / "a"
    (tmp_path / "a").mkdir()
    assert highest_missing(tmp_path / "a" / "b" / "c") == tmp_path / "a" / "b"


def test_removed_on_refusal_removes_only_what_it_created(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("x")
    with pytest.raises(InputError):
        with removed_on_refusal([tmp_path / "old", tmp_path / "new" / "deep", tmp_path / "old" / "sub"]) as created:
            assert created == [tmp_path / "new", tmp_path / "old" / "sub"]
            (tmp_path / "new" / "deep").mkdir(parents=True)
            (tmp_path / "old" / "sub").mkdir()
            raise InputError("refused")
    assert tree(tmp_path) == ["old/", "old/keep.txt"]
    # kept when the work recorded something, and never on other errors
    for error, keep in ((InputError, lambda: True), (RuntimeError, lambda: False)):
        with pytest.raises(error):
            with removed_on_refusal([tmp_path / "new"], keep=keep):
                (tmp_path / "new").mkdir()
                raise error("stop")
        assert (tmp_path / "new").is_dir()
        (tmp_path / "new").rmdir()


def test_a_run_refused_by_the_data_checks_leaves_the_tree_as_it_was(tmp_path, monkeypatch, caplog):
    """Preflight passes (the cases exist); the raw data check of the built experiment dataset refuses a
    label value the dataset does not declare. Before: the run folder, empty nnU-Net folders."""
    monkeypatch.setenv("ATSO_WARM_WORKERS", "0")
    raw = tmp_path / "nn" / "nnUNet_raw"
    source = write_tiny_dataset(raw, dataset_id=990, name="Tiny", n_labeled=9, n_reference=0, n_test=0)
    label = source / "labelsTr" / "tiny_001.nii.gz"
    array, geometry = read_array(label)
    write_array(np.where(array > 0, 7, 0).astype(np.uint8), geometry, label)
    plan = tiny_plan(tmp_path)
    before = tree(tmp_path)
    rc = main(["--plan", str(plan), "--nnunet-dir", str(tmp_path / "nn"), "--run-dir", str(tmp_path / "run")])
    assert rc == 2 and "tiny_001" in caplog.text
    assert tree(tmp_path) == before     # no run folder, no nnUNet_preprocessed / nnUNet_results, no Dataset991
    # the default run folder (under nnUNet_results) too
    rc = main(["--plan", str(plan), "--nnunet-dir", str(tmp_path / "nn")])
    assert rc == 2 and tree(tmp_path) == before
