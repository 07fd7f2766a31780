"""Experiment dataset materialisation: lookup across sources, layout, idempotency, atomicity."""
from __future__ import annotations

import json
import os

import pytest

from atso_nnunet.data import layout, materialize as materialize_module
from atso_nnunet.data.checks import check_raw_dataset
from atso_nnunet.data.materialize import find_cases, materialize
from atso_nnunet.data.synthetic import SyntheticConfig, write_source_dataset
from atso_nnunet.errors import InputError

from helpers import write_tiny_dataset

# write_tiny_dataset: tiny_000..002 in imagesTr, 003..006 in imagesRef, 007..008 in imagesTs, all labeled


@pytest.fixture
def source(tmp_path):
    return write_tiny_dataset(tmp_path / "raw", dataset_id=990, name="Src")


def test_find_cases_across_folders_and_sources(source, tmp_path):
    other = write_source_dataset(tmp_path / "raw", 991, "SynA", 2, SyntheticConfig(shape=(24, 24, 8)))
    found = find_cases([source, other], ["tiny_004", "synA_0001", "tiny_008", "tiny_000"])
    assert list(found) == ["tiny_004", "synA_0001", "tiny_008", "tiny_000"]
    assert found["tiny_004"].image == layout.image_path(source, layout.IMAGES_REF, "tiny_004")
    assert found["tiny_004"].label == layout.label_path(source, layout.LABELS_REF, "tiny_004")
    assert found["tiny_008"].label == layout.label_path(source, layout.LABELS_TS, "tiny_008")
    assert found["synA_0001"].source == other


def test_find_cases_lists_every_missing_case(source):
    with pytest.raises(InputError) as e:
        find_cases([source], ["tiny_000", "nope_1", "nope_2"])
    assert "nope_1" in str(e.value) and "nope_2" in str(e.value) and "tiny_000" not in str(e.value)


def test_find_cases_rejects_a_case_in_two_sources(source, tmp_path):
    twin = write_tiny_dataset(tmp_path / "raw", dataset_id=992, name="Twin")
    with pytest.raises(InputError, match="tiny_001.*more than once"):
        find_cases([source, twin], ["tiny_001"])


def test_materialize_symlinks_layout_and_dataset_json(source, tmp_path):
    target = tmp_path / "raw" / "Dataset995_Exp"
    out = materialize(target, [source], labeled=["tiny_003", "tiny_000"], reference=["tiny_001", "tiny_004"],
                      test=["tiny_007"], dataset_name="Exp")
    assert out == target
    img = layout.image_path(target, layout.IMAGES_TR, "tiny_003")
    assert img.is_symlink() and not os.path.isabs(os.readlink(img))
    assert img.resolve() == layout.image_path(source, layout.IMAGES_REF, "tiny_003").resolve()
    assert layout.case_ids_in(target / layout.IMAGES_TR) == ["tiny_000", "tiny_003"]
    assert layout.label_ids_in(target / layout.LABELS_TR) == ["tiny_000", "tiny_003"]
    assert layout.case_ids_in(target / layout.IMAGES_REF) == ["tiny_001", "tiny_004"]
    assert layout.label_ids_in(target / layout.LABELS_REF) == ["tiny_001", "tiny_004"]
    assert layout.case_ids_in(target / layout.IMAGES_TS) == ["tiny_007"]
    assert layout.label_ids_in(target / layout.LABELS_TS) == ["tiny_007"]
    dj = json.loads((target / "dataset.json").read_text())
    assert dj["numTraining"] == 2 and dj["name"] == "Exp"
    assert dj["labels"] == {"background": 0, "pancreas": 1}
    assert dj["atso"] == {"reference": ["tiny_001", "tiny_004"], "test": ["tiny_007"], "sources": ["Dataset990_Src"]}
    assert check_raw_dataset(target).cases == {"labeled": 2, "reference": 2, "test": 1}
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == []


def test_materialize_copy_and_missing_ground_truth(source, tmp_path):
    layout.label_path(source, layout.LABELS_REF, "tiny_005").unlink()
    target = tmp_path / "raw" / "Dataset996_Copy"
    materialize(target, [source], ["tiny_000"], ["tiny_005", "tiny_006"], [], link="copy")
    img = layout.image_path(target, layout.IMAGES_REF, "tiny_005")
    assert img.is_file() and not img.is_symlink()
    assert layout.label_ids_in(target / layout.LABELS_REF) == ["tiny_006"]
    assert layout.case_ids_in(target / layout.IMAGES_TS) == []


def test_labeled_case_needs_a_label(source, tmp_path):
    layout.label_path(source, layout.LABELS_REF, "tiny_005").unlink()
    target = tmp_path / "raw" / "Dataset997_X"
    with pytest.raises(InputError, match="tiny_005"):
        materialize(target, [source], ["tiny_000", "tiny_005"], [], [])
    assert not target.exists()


def test_materialize_is_idempotent_and_never_replaces_other_contents(source, tmp_path):
    target = tmp_path / "raw" / "Dataset995_Exp"
    materialize(target, [source], ["tiny_000"], ["tiny_001", "tiny_002"], ["tiny_007"])
    before = sorted(str(p) for p in target.rglob("*"))
    # same lists (order of R does not matter): returned as is
    assert materialize(target, [source], ["tiny_000"], ["tiny_002", "tiny_001"], ["tiny_007"]) == target
    with pytest.raises(InputError, match="already exists with other contents"):
        materialize(target, [source], ["tiny_000"], ["tiny_001"], ["tiny_007"])
    assert sorted(str(p) for p in target.rglob("*")) == before


def test_overlapping_and_duplicated_lists_are_rejected(source, tmp_path):
    target = tmp_path / "raw" / "Dataset995_Exp"
    with pytest.raises(InputError) as e:
        materialize(target, [source], ["tiny_000", "tiny_001"], ["tiny_001", "tiny_002"], ["tiny_002"])
    assert "tiny_001" in str(e.value) and "tiny_002" in str(e.value)
    with pytest.raises(InputError, match="more than once"):
        materialize(target, [source], ["tiny_000", "tiny_000"], [], [])
    with pytest.raises(InputError, match="labeled is empty"):
        materialize(target, [source], [], ["tiny_001"], [])
    with pytest.raises(InputError, match="link"):
        materialize(target, [source], ["tiny_000"], [], [], link="hardlink")
    assert not target.exists()


def test_interrupted_materialize_leaves_nothing(source, tmp_path, monkeypatch):
    calls = []
    real = materialize_module._place

    def failing(*args):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(materialize_module, "_place", failing)
    target = tmp_path / "raw" / "Dataset995_Exp"
    with pytest.raises(KeyboardInterrupt):
        materialize(target, [source], ["tiny_000", "tiny_001"], ["tiny_003"], [])
    assert sorted(p.name for p in target.parent.iterdir()) == ["Dataset990_Src"]


def test_sources_with_different_labels_need_explicit_labels(source, tmp_path):
    synth_b = write_source_dataset(tmp_path / "raw", 993, "SynB", 2, SyntheticConfig(domain="B", shape=(24, 24, 8)))
    target = tmp_path / "raw" / "Dataset998_Mix"
    with pytest.raises(InputError, match="different labels"):
        materialize(target, [source, synth_b], ["tiny_000", "synB_0000"], ["synB_0001"], [])
    labels = {"background": 0, "pancreas": 1, "tumour": 2}
    materialize(target, [source, synth_b], ["tiny_000", "synB_0000"], ["synB_0001"], [], labels=labels)
    dj = json.loads((target / "dataset.json").read_text())
    assert dj["labels"] == labels and dj["atso"]["sources"] == ["Dataset990_Src", "Dataset993_SynB"]
    check_raw_dataset(target)
