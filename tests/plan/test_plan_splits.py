"""atso_nnunet.plan.splits: the reference split, case rules applied by the library, cases against sources."""
from __future__ import annotations

import json

import pytest

from atso_nnunet.errors import InputError
from atso_nnunet.paths import NnUNetPaths
from atso_nnunet.plan import (contiguous_folds, dataset_problems, plan_from_dict, reference_subsets,
                              resolve_case_rule, resolved, split_reference, validate_against_dataset)
from plan_fixtures import plan_data


def test_split_reference_deterministic_balanced_disjoint_covering():
    ref = [f"case_{i:02d}" for i in range(23)]
    for k in (2, 3, 5):
        parts = split_reference(ref, k, seed=7)
        assert parts == split_reference(list(reversed(ref)), k, seed=7)  # order of input irrelevant
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) > 0
        assert sorted(c for p in parts for c in p) == ref
        assert len({c for p in parts for c in p}) == len(ref)
        assert all(p == sorted(p) for p in parts)
    assert split_reference(ref, 2, seed=7) != split_reference(ref, 2, seed=8)


def test_split_reference_errors_name_the_field():
    with pytest.raises(InputError, match="cannot fill 3 subsets"):
        split_reference(["a", "b"], 3, seed=0)
    with pytest.raises(InputError, match="subsets"):
        split_reference(["a", "b"], 0, seed=0)
    with pytest.raises(InputError, match="more than once: a"):
        split_reference(["a", "a", "b"], 2, seed=0)


def test_resolved_records_the_split():
    plan = plan_from_dict(plan_data())
    res = resolved(plan)
    assert res["reference_split"] == split_reference(plan.reference, 2, 0)
    assert res["training"] == {"num_epochs": 1} and "schedule" not in res
    json.dumps(res)  # JSON-able
    again = plan_from_dict(res)  # a resolved plan loads again and keeps exactly that split
    assert reference_subsets(again) == res["reference_split"]


def test_contiguous_folds_put_the_larger_folds_last():
    folds = contiguous_folds([f"c{i:02d}" for i in range(10)], 4)
    assert [len(f) for f in folds] == [2, 2, 3, 3]
    assert folds[0] == ["c00", "c01"] and folds[3] == ["c07", "c08", "c09"]


def _labeled_source(raw, name, ids):
    labels = raw / name / "labelsTr"
    labels.mkdir(parents=True)
    for c in ids:
        (labels / f"{c}.nii.gz").write_bytes(b"")
    return raw / name


def test_resolve_case_rule_reads_reference_and_test_from_the_source(tmp_path):
    """The library applies a case rule (not only the CLI), from the nnU-Net raw folder."""
    data = plan_data(sources=["Dataset980_SyntheticA", "Dataset983_SyntheticB"], reference=[], test=[],
                     case_rule={"source": "Dataset983_SyntheticB", "folds": 3, "test_folds": [0]})
    plan = plan_from_dict(data)
    paths = NnUNetPaths(tmp_path / "raw", tmp_path / "pre", tmp_path / "res")
    with pytest.raises(InputError, match="case_rule: source Dataset983_SyntheticB not found .*atso_nnunet_synth"):
        resolve_case_rule(plan, paths)
    _labeled_source(tmp_path / "raw", "Dataset983_SyntheticB", [f"synB_{i:04d}" for i in range(7)] + ["s0"])
    filled = resolve_case_rule(plan, paths)
    assert filled.case_rule is None and "case_rule" in filled.note
    assert filled.test == ("synB_0000", "synB_0001")  # s0 is labeled: not in R or E
    assert filled.reference == tuple(f"synB_{i:04d}" for i in range(2, 7))
    plain = plan_from_dict(plan_data())
    assert resolve_case_rule(plain, paths) is plain


def test_validate_against_dataset_lists_missing_cases():
    plan = plan_from_dict(plan_data())
    have = {"s0", "s1", "s2", "r0", "r1", "r2", "r3", "r4", "e0", "e1"}
    validate_against_dataset(plan, have)
    validate_against_dataset(plan, {c: object() for c in have})  # a mapping keyed by case id
    problems = dataset_problems(plan, have - {"s1", "r4", "e0"}, labeled_available={"s0"})
    text = "\n".join(problems)
    assert "labeled: 1 case(s) have no image" in text and "s1" in text
    assert "reference: 1 case(s) have no image" in text and "r4" in text
    assert "test: 1 case(s) have no image" in text and "e0" in text
    assert "labeled: 1 labeled case(s) have no ground-truth label" in text and "s2" in text
    with pytest.raises(InputError, match="4 problems"):
        validate_against_dataset(plan, have - {"s1", "r4", "e0"}, labeled_available={"s0"})
