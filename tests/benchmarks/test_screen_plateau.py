"""benchmarks/screen_plateau.py reads the per-epoch pseudo Dice of nnU-Net's training logs."""
from __future__ import annotations

import json

import pytest

from helpers import load_script


@pytest.fixture(scope="module")
def screen():
    return load_script("benchmarks/screen_plateau.py")


LOG = """2026-11-29 21:03:01.1: Epoch 0
2026-11-29 21:03:08.094864: Pseudo dice [np.float32(0.0)] 
2026-11-29 21:03:14.396360: Pseudo dice [np.float32(0.0)] 
2026-11-29 21:03:20.904277: Pseudo dice [np.float32(0.4514)] 
2026-11-29 21:03:27.0: Pseudo dice [0.6, 0.8] 
"""


def test_pseudo_dice_per_epoch_reads_numpy_and_plain_lists(screen):
    assert screen.pseudo_dice_per_epoch(LOG) == pytest.approx([0.0, 0.0, 0.4514, 0.7])


def test_escape_epoch_is_the_first_above_the_threshold(screen):
    assert screen.escape_epoch([0.0, 0.05, 0.4, 0.0], 0.1) == 2
    assert screen.escape_epoch([0.0, 0.0], 0.1) is None


def test_read_result_marks_stuck_trainings(screen, tmp_path):
    (tmp_path / "r0" / "fold_all").mkdir(parents=True)
    (tmp_path / "r0" / "fold_all" / "training_log_1.txt").write_text(LOG.replace("0.4514", "0.0").replace("[0.6, 0.8]", "[0.0]"))
    row = screen.read_result({"folder": str(tmp_path / "r0")}, 0.1)
    assert row["stuck"] and row["escape_epoch"] is None
    (tmp_path / "r0" / "fold_all" / "training_log_1.txt").write_text(LOG)
    row = screen.read_result({"folder": str(tmp_path / "r0")}, 0.1)
    assert not row["stuck"] and row["escape_epoch"] == 2 and row["final_pseudo_dice"] == 0.7


def test_set_values_are_read_as_json(screen):
    assert screen.parse_set(["initial_lr=0.01", "final_validation=false", "x=abc"]) == {
        "initial_lr": 0.01, "final_validation": False, "x": "abc"}
    with pytest.raises(SystemExit, match="key=value"):
        screen.parse_set(["initial_lr"])


def test_summary_counts_stuck_trainings(screen, tmp_path):
    (tmp_path / "a").mkdir()
    rows = [{"tag": "a", "overrides": {"initial_lr": 0.01}, "escape_epoch": e, "stuck": e is None,
             "final_pseudo_dice": 0.0 if e is None else 0.6} for e in (None, 2, 3)]
    (tmp_path / "a" / "results.json").write_text(json.dumps(rows))
    table = screen.summarize(tmp_path)
    assert "| a | initial_lr=0.01 | 3 | 1 | 1 | 1 | 2.5 | 0.6 |" in table
