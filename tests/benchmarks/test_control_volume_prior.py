"""benchmarks/control_volume_prior.py: which trained model a control copies, and when it trains one again."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import load_script


@pytest.fixture(scope="module")
def control():
    return load_script("benchmarks/control_volume_prior.py")


def _trained(run: Path, model: str, views=("axial", "coronal"), final=True) -> None:
    for view in views:
        fold = run / "models" / model / "nnUNet_results" / "Dataset951_X" / f"T__P_{view}__2d" / "fold_all"
        fold.mkdir(parents=True)
        if final:
            (fold / "checkpoint_final.pth").write_bytes(b"")


def test_m0_comes_from_the_labeled_only_run_first(control, tmp_path):
    seed, work = tmp_path / "seed1", tmp_path / "work"
    _trained(seed / "supervised", "M0")
    _trained(seed / "stso", "M0")
    (work / "matched").mkdir(parents=True)
    assert control.model_source(seed / "stso", "M0", work, work / "matched") == seed / "supervised"
    _trained(seed / "stso", "g1_all")
    assert control.model_source(seed / "stso", "g1_all", work, work / "matched") == seed / "stso"


def test_a_model_no_run_kept_is_trained_again_once_and_shared_by_the_other_arm(control, tmp_path):
    seed, work = tmp_path / "seed1", tmp_path / "work"
    (seed / "stso").mkdir(parents=True)
    (work / "stock").mkdir(parents=True)
    (work / "matched").mkdir(parents=True)
    assert control.model_source(seed / "stso", "M0", work, work / "stock") is None
    _trained(work / "stock", "M0", views=("axial",))
    _trained(work / "stock", "M0", views=("coronal",), final=False)  # one view still training
    assert control.model_source(seed / "stso", "M0", work, work / "matched") is None
    (work / "stock" / "models" / "M0" / "nnUNet_results" / "Dataset951_X" / "T__P_coronal__2d" / "fold_all"
     / "checkpoint_final.pth").write_bytes(b"")
    assert control.model_source(seed / "stso", "M0", work, work / "matched") == work / "stock"
    assert control.model_source(seed / "stso", "M0", work, work / "stock") is None  # never its own folder
