"""ETA from per-kind mean durations, checked against values computed by hand."""
from __future__ import annotations

from atso_nnunet.run.progress import Eta, format_duration, work_unit
from atso_nnunet.schedule import Step

TRAIN = [Step(id=f"g0/train/M0/{v}", kind="train", generation=0, model="M0", view=v, init="scratch") for v in ("a", "b", "c")]
PREDICT = [Step(id=f"g0/predict/M0/{v}/{x}", kind="predict", generation=0, model="M0", view=v,
                inputs=(f"g0/train/M0/{v}",)) for v in ("a", "b", "c") for x in ("R", "E")]
FUSE = [Step(id="g0/fuse/R_g0", kind="fuse", generation=0, fusion="vote", inputs=tuple(s.id for s in PREDICT))]
STEPS = TRAIN + PREDICT + FUSE


def test_prediction_of_r_and_e_is_one_unit():
    assert work_unit(PREDICT[0]) == work_unit(PREDICT[1]) == ("predict", "M0", "a")
    assert work_unit(TRAIN[0]) == "g0/train/M0/a"


def test_eta_by_hand_two_slots():
    eta = Eta(STEPS, parallel=2)
    assert eta.run_remaining() == (0.0, ["train", "predict", "fuse"])
    eta.finished("g0/train/M0/a", 30.0)
    # batch: 2 trainings left, one wave of 2 slots -> 30 s; predictions and fusion unknown
    assert eta.batch_remaining("g0/train/M0/a") == (30.0, [])
    assert eta.describe("g0/train/M0/a") == "ETA batch 0m30s, run 0m30s+ (predict, fuse: no duration yet)"
    eta.finished("g0/train/M0/b", 50.0)  # mean 40
    eta.finished("g0/train/M0/c", 40.0)
    eta.finished("g0/predict/M0/a/R", 10.0)
    eta.finished("g0/predict/M0/a/E", 10.0)  # same nnUNetv2_predict job: counted once
    assert eta.mean("train") == 40.0 and eta.mean("predict") == 10.0
    # second batch: predictions b and c (two units, one wave of 2) = 10 s; fuse unknown
    assert eta.run_remaining() == (10.0, ["fuse"])
    eta.finished("g0/predict/M0/b/R", 12.0)
    eta.finished("g0/predict/M0/b/E", 12.0)
    eta.finished("g0/predict/M0/c/R", 8.0)
    eta.finished("g0/predict/M0/c/E", 8.0)
    assert eta.run_remaining() == (0.0, ["fuse"])


def test_eta_one_slot_waves_and_steps_done_before():
    done_before = {"g0/train/M0/a"}
    eta = Eta(STEPS, parallel=1, done=lambda s: s in done_before, previous={"g0/predict/M0/a/R": 6.0})
    eta.finished("g0/train/M0/b", 20.0)
    # one training (c) left at 20 s; predictions b, c at 6 s each, one slot -> 12 s
    assert eta.run_remaining() == (32.0, ["fuse"])
    eta = Eta(STEPS, parallel=2)
    eta.finished("g0/train/M0/a", 9.0)
    eta.finished("g0/predict/M0/a/R", 3.0)
    eta.finished("g0/fuse/R_g0", 1.0)  # plugin steps run one after the other: not divided by slots
    # trainings b, c: one wave (9 s); predictions b, c: one wave (3 s); fuse already counted
    assert eta.run_remaining() == (12.0, [])


def test_format_duration():
    assert format_duration(59.6) == "1m00s"
    assert format_duration(3725) == "1h02m05s"
