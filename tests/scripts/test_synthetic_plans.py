"""The shipped synthetic plans are reproduced by scripts/make_synthetic_plans.py; the benchmark plans
follow the calibrated regime (docs/calibration.md)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from atso_nnunet.plan import load_plan

from helpers import load_script

REPO = Path(__file__).resolve().parents[2]
PLANS = REPO / "plans" / "synthetic"
SHIPPED = ("10pct.json", "20pct.json", "transfer.json", "bench_10pct.json", "bench_transfer.json",
           "bench_r1.json")


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/make_synthetic_plans.py")


def test_generator_reproduces_shipped_plans(script, tmp_path):
    assert script.main(["--out", str(tmp_path)]) == 0
    for name in SHIPPED:
        assert (tmp_path / name).read_text() == (PLANS / name).read_text(), f"{name} differs: re-run the script"
        load_plan(PLANS / name)  # valid under atso_nnunet.experiment


def test_bench_10pct_split():
    plan = json.loads((PLANS / "bench_10pct.json").read_text())
    labeled, reference, test = (set(plan[k]) for k in ("labeled", "reference", "test"))
    n = plan["synthetic"][plan["sources"][0]]["n_cases"]
    assert len(labeled | reference | test) == n and not (labeled & reference or labeled & test or reference & test)
    assert len(labeled) / len(labeled | reference) == pytest.approx(0.1)
    assert plan["test"] == sorted(plan["test"]) and plan["test"][0].endswith("_0000")
    assert (plan["method"], plan["generations"], plan["views"]) == ("atso", 3, ["axial", "coronal", "sagittal"])
    assert "docs/calibration.md" in plan["note"]


def test_bench_transfer_uses_the_same_regime():
    semi = json.loads((PLANS / "bench_10pct.json").read_text())
    plan = json.loads((PLANS / "bench_transfer.json").read_text())
    assert set(plan["labeled"]) == set(semi["labeled"]) | set(semi["reference"])
    assert all(c.startswith("synB_") for c in plan["reference"] + plan["test"])
    assert plan["training"] == semi["training"] and plan["network"] == semi["network"]
    assert (plan["metric"], plan["eval_label_map"]) == ("global", {"2": 1})
    assert "docs/calibration.md" in plan["note"]


def test_calibration_labeled_sets_are_nested(script):
    _, train = script.bench_split()
    two, four, eight = (set(script.bench_labeled(train, k)) for k in (2, 4, 8))
    assert len(two) == 2 and two < four < eight
    assert sorted(two) == json.loads((PLANS / "bench_10pct.json").read_text())["labeled"]


def test_oracle_plan_is_supervised_without_reference(script, tmp_path):
    plan = script.bench_plan("all", 999, "Oracle")
    assert plan["reference"] == [] and (plan["method"], plan["generations"]) == ("supervised", 0)
    (tmp_path / "oracle.json").write_text(json.dumps(plan))
    assert len(load_plan(tmp_path / "oracle.json").labeled) == len(script.bench_split()[1])


def test_benchmark_seeds_never_share_a_dataset_id():
    """atso_nnunet_compare builds seed s's experiment dataset under dataset_id + s; nnU-Net finds
    datasets by id, so seeds 0-4 of one benchmark plan must not land on another shipped plan's
    experiment, a source, or another benchmark's seeds."""
    plans = {p.name: json.loads(p.read_text()) for p in REPO.glob("plans/**/*.json")}
    sources = {int(s[len("Dataset"):len("Dataset") + 3]) for p in plans.values() for s in p["sources"]}
    taken = {name: {p["dataset_id"]} for name, p in plans.items()}
    for name in ("bench_10pct.json", "bench_transfer.json"):
        taken[name] = set(range(plans[name]["dataset_id"], plans[name]["dataset_id"] + 5))
    for name in ("bench_10pct.json", "bench_transfer.json"):
        others = set().union(*(ids for n, ids in taken.items() if n != name)) | sources
        assert not taken[name] & others, (name, sorted(taken[name] & others))


@pytest.mark.parametrize("fusion", ["vote", "mean"])
def test_r1_plan_lists_v_apart_from_e_and_keeps_the_calibration_settings(script, tmp_path, fusion):
    """Regime r1 (issue 25): E is the first 8 cases (in no calibration plan), V the next 8 (listed, never
    read), the calibration's generator, network and schedule, the fusion the rule chose."""
    plan = script.bench_r1_plan(noise_sigma=2, max_features=16, n_labeled=3, num_epochs=240, fusion=fusion)
    ids = [f"synA_{i:04d}" for i in range(46)]
    assert plan["test"] == ids[:8] and plan["validation"] == ids[8:16]
    assert len(plan["labeled"]) == 3 and sorted(plan["labeled"] + plan["reference"]) == ids[16:]
    assert plan["synthetic"][plan["sources"][0]]["noise_sigma"] == 2.0
    assert (plan["network"]["max_features"], plan["training"]["num_epochs"]) == (16, 240)
    assert plan.get("fusion", "vote") == fusion and "method_options" not in plan
    (tmp_path / "r1.json").write_text(json.dumps(plan))
    loaded = load_plan(tmp_path / "r1.json")
    assert loaded.validation and not set(loaded.validation) & set(loaded.test)
