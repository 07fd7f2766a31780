"""Timing from nnU-Net training logs (``--timing-from``): wall-clock epochs, not nnU-Net's 'Epoch time'."""
from __future__ import annotations

import json

import pytest

from atso_nnunet.run import dryrun
from atso_nnunet.nnunet.training_log import epoch_seconds

# nnU-Net 2.8 on a GPU with a small network: the logged epoch time (0.5 s) leaves out the
# checkpoint and progress plot that follow it; the next epoch starts 1.3 s after this one.
GPU_LOG = """\
2026-11-30 22:00:14.025198: Epoch 60
2026-11-30 22:00:14.025276: Current learning rate: 0.02176
2026-11-30 22:00:14.610394: train_loss -0.8597
2026-11-30 22:00:14.610599: Epoch time: 0.59 s
2026-11-30 22:00:14.610631: Yayy! New best EMA pseudo Dice: 0.8986999988555908
2026-11-30 22:00:15.373070:
2026-11-30 22:00:15.373166: Epoch 61
2026-11-30 22:00:15.885689: train_loss -0.8482
2026-11-30 22:00:15.890000: Epoch time: 0.52 s
2026-11-30 22:00:16.673166: Epoch 62
2026-11-30 22:00:17.200000: Epoch time: 0.53 s
"""

# an interrupted training continued with --c: the gap between epoch 62 and 50 is no epoch
RESTARTED = GPU_LOG + """\
2026-11-30 23:10:00.000000: Epoch 50
2026-11-30 23:10:01.000000: Epoch time: 0.9 s
2026-11-30 23:10:02.000000: Epoch 51
"""


def test_epoch_seconds_are_wall_clock_between_consecutive_epochs():
    assert epoch_seconds(GPU_LOG) == pytest.approx([1.347968, 1.3])
    assert epoch_seconds(RESTARTED) == pytest.approx([1.347968, 1.3, 2.0])
    one = "2026-11-30 22:00:14.025198: Epoch 0\n2026-11-30 22:00:20.000000: Epoch time: 5.9 s\n"
    assert epoch_seconds(one) == [5.9]          # a single epoch: nnU-Net's own figure
    assert epoch_seconds("nothing here\n") == []


def test_seconds_per_iteration_uses_run_config_iterations(tmp_path):
    fold = tmp_path / "Dataset1_X" / "T__P__2d" / "fold_all"
    fold.mkdir(parents=True)
    (fold / "training_log_2026_11_30_22_00_00.txt").write_text(GPU_LOG)
    (fold / "atso_run_config.json").write_text(json.dumps({"num_iterations_per_epoch": 50}))
    assert dryrun.seconds_per_iteration(tmp_path) == pytest.approx(1.323984 / 50)
    (fold / "atso_run_config.json").unlink()
    assert dryrun.seconds_per_iteration(tmp_path) == pytest.approx(1.323984 / 250)  # nnU-Net's iterations per epoch
    assert dryrun.seconds_per_iteration(tmp_path / "Dataset1_X" / "nothing") is None


def test_dry_run_before_the_data_exist_shows_schedule_and_budget_then_the_missing_source(tmp_path, capsys, caplog):
    """Issue 29 item 4: a team sees the schedule and the budget before it converts its scans."""
    from atso_nnunet.cli.run import main

    run_dir = tmp_path / "run"
    rc = main(["-d", "NIH", "-f", "10pct", "--dry-run", "--nnunet-dir", str(tmp_path / "nn"),
               "--run-dir", str(run_dir), "--sec-per-iter", "0.5"])
    out = capsys.readouterr().out
    assert rc == 2
    assert "# training budget: 42 trainings, 2,625,000 iterations" in out and "364.6 GPU-hours" in out
    assert "#   g0/train/M0/axial" in out and "#   report" in out
    assert "Dataset801_NIHPancreas" in caplog.text and "atso_nnunet_convert nih" in caplog.text
    assert not run_dir.exists()
