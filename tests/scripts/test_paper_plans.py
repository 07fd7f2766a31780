"""The shipped paper plans follow the protocol and are reproduced by scripts/make_paper_plans.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from atso_nnunet.plan import CaseRule, load_plan

from helpers import load_script

REPO = Path(__file__).resolve().parents[2]
PLANS = REPO / "plans"
GENERATED = ("NIH/10pct.json", "NIH/20pct.json", "transfer/nih_to_msd.json")


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/make_paper_plans.py")


def nih(name):
    return json.loads((PLANS / "NIH" / name).read_text())


def test_generator_reproduces_shipped_plans(script, tmp_path):
    assert script.main(["--out", str(tmp_path)]) == 0
    for rel in GENERATED:
        assert (tmp_path / rel).read_text() == (PLANS / rel).read_text(), f"{rel} differs: re-run the script"


def test_folds_are_rstn_contiguous(script):
    folds = script.folds(script.nih_ids())
    assert [len(f) for f in folds] == [20, 20, 21, 21]
    assert folds[0][0] == "NIH_0001" and folds[0][-1] == "NIH_0020" and folds[3][-1] == "NIH_0082"


@pytest.mark.parametrize("name,n_labeled,dataset_id", [("10pct.json", 6, 811), ("20pct.json", 12, 812)])
def test_nih_plans(name, n_labeled, dataset_id):
    plan = nih(name)
    labeled, reference, test = (set(plan[k]) for k in ("labeled", "reference", "test"))
    assert len(test) == 20 and test == {f"NIH_{n:04d}" for n in range(1, 21)}
    assert len(labeled) == n_labeled and len(labeled | reference) == 62
    assert not (labeled & reference or labeled & test or reference & test)
    assert not labeled & {"NIH_0025", "NIH_0070"}
    assert plan["labeled"] == sorted(plan["labeled"])
    assert (plan["generations"], plan["metric"], plan["dataset_id"]) == (5, "mean", dataset_id)
    assert plan["sources"] == ["Dataset801_NIHPancreas"] and "network" not in plan
    # settings stated on purpose, with the reasoning in the note; the paper's M_t per generation
    assert plan["training"]["num_epochs"] == 250 and plan["training"]["roles"]["self"]["initial_lr"] == 0.001
    assert "250 epochs" in plan["note"] and "--dry-run" in plan["note"]
    assert plan["method_options"]["atso"]["test_model"] == "combined"
    assert plan["may_be_absent"] == ["NIH_0025", "NIH_0070"]
    assert "default_rng(0)" in plan["note"]
    load_plan(PLANS / "NIH" / name)  # valid under atso_nnunet.plan


def test_ten_percent_inside_twenty():
    assert set(nih("10pct.json")["labeled"]) < set(nih("20pct.json")["labeled"])


def test_transfer_template_and_filled(script, tmp_path):
    template = json.loads((PLANS / "transfer" / "nih_to_msd.json").read_text())
    train = set(nih("10pct.json")["labeled"]) | set(nih("10pct.json")["reference"])
    # S = the NIH training cases every release has (today's 80-case release lacks NIH_0025, NIH_0070)
    assert set(template["labeled"]) == train - {"NIH_0025", "NIH_0070"} and len(template["labeled"]) == 60
    assert template["reference"] == [] and template["test"] == []
    assert "make_paper_plans.py --msd-dataset" in template["note"]
    assert (template["metric"], template["eval_label_map"], template["generations"]) == ("global", {"2": 1}, 4)
    assert template["sources"] == ["Dataset801_NIHPancreas", "Dataset802_MSDPancreas"]

    # filled from an MSD id list with gaps (281 labeled cases, as in Task07)
    ids = [f"pancreas_{n:03d}" for n in range(1, 422) if n % 3 != 2][:281]
    (tmp_path / "ids.txt").write_text("\n".join(reversed(ids)))
    script.main(["--out", str(tmp_path / "plans"), "--msd-ids", str(tmp_path / "ids.txt")])
    filled = load_plan(tmp_path / "plans" / "transfer" / "nih_to_msd.json")
    assert len(filled.test) == 70 and len(filled.reference) == 211
    assert list(filled.test) == ids[:70] and set(filled.reference) == set(ids[70:])


def _stand_in(raw: Path, name: str, ids, labeled=True) -> Path:
    """A source dataset whose files are empty placeholders: enough for case lookup and plan checks."""
    ds = raw / name
    (ds / "imagesTr").mkdir(parents=True)
    (ds / "labelsTr").mkdir()
    for c in ids:
        (ds / "imagesTr" / f"{c}_0000.nii.gz").write_bytes(b"")
        if labeled:
            (ds / "labelsTr" / f"{c}.nii.gz").write_bytes(b"")
    (ds / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "pancreas": 1},
                                                 "numTraining": len(ids), "file_ending": ".nii.gz"}))
    return ds


def test_real_plans_validate_against_converted_stand_ins(script, tmp_path):
    """The three paper plans against stand-ins with NIH / MSD-style ids; missing ids are listed."""
    from atso_nnunet.data.materialize import find_cases
    from atso_nnunet.errors import InputError
    from atso_nnunet.plan import validate_against_dataset

    nih_ids = [f"NIH_{i:04d}" for i in range(1, 83)]
    msd_ids = [f"pancreas_{i:03d}" for i in range(1, 422, 3)]  # MSD ids have gaps
    nih_src = _stand_in(tmp_path / "raw", "Dataset801_NIHPancreas", nih_ids)
    msd_src = _stand_in(tmp_path / "raw", "Dataset802_MSDPancreas", msd_ids)
    # the transfer template is filled from the converted MSD dataset, as its note says
    assert script.main(["--out", str(tmp_path / "plans"), "--msd-dataset", str(msd_src)]) == 0
    for rel in GENERATED:
        plan = load_plan(tmp_path / "plans" / rel)
        sources = [tmp_path / "raw" / s for s in plan.sources]
        cases = find_cases(sources, [*plan.labeled, *plan.reference, *plan.test])
        validate_against_dataset(plan, cases, [c for c, f in cases.items() if f.label is not None])
    transfer = load_plan(tmp_path / "plans" / "transfer/nih_to_msd.json")
    assert set(transfer.reference) | set(transfer.test) == set(msd_ids)
    assert transfer.metric == "global" and transfer.eval_label_map == {"2": 1}
    # a case missing from the converted dataset is named before any work
    (nih_src / "imagesTr" / "NIH_0003_0000.nii.gz").unlink()
    plan = load_plan(PLANS / "NIH" / "10pct.json")
    with pytest.raises(InputError, match="NIH_0003"):
        cases = find_cases([nih_src], [*plan.labeled, *plan.reference, *plan.test])
        validate_against_dataset(plan, cases)


def test_transfer_plan_reads_msd_cases_from_the_converted_source(script, tmp_path):
    """The shipped transfer plan fills R / E from the converted MSD dataset (its ids have gaps)."""
    from atso_nnunet.errors import InputError
    from atso_nnunet.plan import apply_case_rule

    plan = load_plan(PLANS / "transfer" / "nih_to_msd.json")
    assert plan.case_rule == CaseRule(source="Dataset802_MSDPancreas", folds=4, test_folds=(0,))
    with pytest.raises(InputError, match="atso_nnunet_convert msd"):
        apply_case_rule(plan, tmp_path / "raw" / "Dataset802_MSDPancreas")
    msd_ids = [f"pancreas_{i:03d}" for i in range(1, 422, 3)]
    msd_src = _stand_in(tmp_path / "raw", "Dataset802_MSDPancreas", msd_ids)
    resolved = apply_case_rule(plan, msd_src)
    assert resolved.case_rule is None and "case_rule" in resolved.note
    # the same lists as the script writes for explicit plans
    assert script.main(["--out", str(tmp_path / "plans"), "--msd-dataset", str(msd_src)]) == 0
    explicit = load_plan(tmp_path / "plans" / "transfer" / "nih_to_msd.json")
    assert (resolved.reference, resolved.test) == (explicit.reference, explicit.test)
    assert [len(f) for f in script.folds(msd_ids)] == [35, 35, 35, 36]


def test_case_rule_problems_are_named():
    from atso_nnunet.errors import InputError
    from atso_nnunet.plan import plan_from_dict

    data = json.loads((PLANS / "transfer" / "nih_to_msd.json").read_text())
    data["case_rule"] = {"source": "Dataset999_Other", "folds": 1, "test_folds": [3], "fold": 1}
    data["test"] = ["pancreas_001"]
    with pytest.raises(InputError) as e:
        plan_from_dict(data)
    msg = str(e.value)
    for part in ("case_rule.fold: unknown key", "case_rule.source", "case_rule.folds", "must be empty"):
        assert part in msg


@pytest.mark.parametrize("rel", GENERATED)
def test_paper_plans_dry_run_on_todays_80_case_release(rel, tmp_path, capsys, caplog):
    """Every paper plan dry-runs against an 80-case NIH stand-in (NIH_0025, NIH_0070 removed):
    the absent reference cases are named in a warning and left out, with the resulting sizes."""
    from atso_nnunet.cli.run import main

    nih_ids = [f"NIH_{i:04d}" for i in range(1, 83) if i not in (25, 70)]
    raw = tmp_path / "nn" / "nnUNet_raw"
    _stand_in(raw, "Dataset801_NIHPancreas", nih_ids)
    _stand_in(raw, "Dataset802_MSDPancreas", [f"pancreas_{i:03d}" for i in range(1, 422, 3)])
    (tmp_path / "nn" / "nnUNet_preprocessed").mkdir()
    (tmp_path / "nn" / "nnUNet_results").mkdir()
    rc = main(["--plan", str(PLANS / rel), "--nnunet-dir", str(tmp_path / "nn"), "--run-dir", str(tmp_path / "run"),
               "--dry-run", "--sec-per-iter", "0.2"])
    assert rc == 0, caplog.text
    out = capsys.readouterr().out
    assert "GPU-hours at 0.2 s/iteration" in out and "nnUNetv2_train" in out
    recorded = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert not {"NIH_0025", "NIH_0070"} & set(recorded["reference"] + recorded["test"] + recorded["labeled"])
    if rel.startswith("NIH"):
        assert "NIH_0025, NIH_0070" in caplog.text and "left out" in caplog.text
        n_labeled = len(recorded["labeled"])
        assert f"{n_labeled} labeled, {62 - n_labeled - 2} reference and 20 test cases" in caplog.text


def test_a_missing_labeled_case_is_an_error_not_a_warning(tmp_path, caplog):
    from atso_nnunet.cli.run import main

    plan = json.loads((PLANS / "NIH" / "10pct.json").read_text())
    gone = plan["labeled"][0]
    raw = tmp_path / "nn" / "nnUNet_raw"
    _stand_in(raw, "Dataset801_NIHPancreas", [f"NIH_{i:04d}" for i in range(1, 83) if f"NIH_{i:04d}" != gone])
    rc = main(["--plan", str(PLANS / "NIH" / "10pct.json"), "--nnunet-dir", str(tmp_path / "nn"),
               "--run-dir", str(tmp_path / "run")])
    assert rc == 2 and gone in caplog.text and "labeled" in caplog.text


def test_may_be_absent_never_holds_a_labeled_case():
    from atso_nnunet.errors import InputError
    from atso_nnunet.plan import plan_from_dict

    data = json.loads((PLANS / "NIH" / "10pct.json").read_text())
    data["may_be_absent"] = [data["labeled"][0], "NIH_9999"]
    with pytest.raises(InputError) as e:
        plan_from_dict(data)
    assert "cannot be optional" in str(e.value) and "NIH_9999" in str(e.value)
