"""Tri-view planning and preprocessing through nnU-Net's API (atso_nnunet.nnunet.planning)."""
from __future__ import annotations

import json
import os
import pickle
import time

import blosc2
import pytest

from atso_nnunet.data import layout
from atso_nnunet.errors import InputError
from atso_nnunet.nnunet.planning import (NetworkOverride, completion_marker, plan_and_preprocess, plans_file,
                                  unlabeled_folder)
from atso_nnunet.views import TRANSPOSE_FORWARD, VIEWS
from helpers import TINY_SHAPE

pytest_plugins = ["fixtures_nnunet"]


def _plans(planned, view):
    return json.loads(plans_file(planned.paths, planned.dataset_name, planned.plans[view]).read_text())


def _data_folder(planned, view):
    plans = _plans(planned, view)
    return planned.paths.preprocessed / planned.dataset_name / plans["configurations"]["2d"]["data_identifier"]


def test_each_view_has_its_plans_and_transpose(planned_tiny):
    assert planned_tiny.plans == {v: f"ATSOPlans_{v}" for v in VIEWS}
    for view in VIEWS:
        plans = _plans(planned_tiny, view)
        forward = plans["transpose_forward"]
        assert forward == list(TRANSPOSE_FORWARD[view])
        assert [forward[i] for i in plans["transpose_backward"]] == [0, 1, 2]
        assert plans["plans_name"] == f"ATSOPlans_{view}"
        assert plans["configurations"]["2d"]["data_identifier"] == f"ATSOPlans_{view}_2d"
        # 2D plans the plane that remains after the slicing axis
        median = plans["configurations"]["2d"]["median_image_size_in_voxels"]
        assert [round(m) for m in median] == [TINY_SHAPE[a] for a in forward[1:]]


def test_network_override_is_in_the_plans(planned_tiny):
    for view in VIEWS:
        config = _plans(planned_tiny, view)["configurations"]["2d"]
        arch = config["architecture"]["arch_kwargs"]
        assert config["batch_size"] == 2
        assert arch["n_stages"] == 3
        assert max(arch["features_per_stage"]) == 16
        for key in ("features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage"):
            assert len(arch[key]) == 3, key
        assert len(arch["n_conv_per_stage_decoder"]) == 2


def test_preprocessed_shapes_follow_the_transpose(planned_tiny):
    labeled = layout.case_ids_in(planned_tiny.dataset_dir / layout.IMAGES_TR)
    for view in VIEWS:
        folder = _data_folder(planned_tiny, view)
        expected = tuple(TINY_SHAPE[a] for a in TRANSPOSE_FORWARD[view])
        # nnU-Net's folder holds exactly its labeled cases: nothing of ours
        assert sorted(os.listdir(folder)) == sorted(f"{c}{s}" for c in labeled for s in (".b2nd", "_seg.b2nd", ".pkl"))
        for case in labeled:
            assert blosc2.open(str(folder / f"{case}.b2nd"), mode="r").shape == (1,) + expected
            assert blosc2.open(str(folder / f"{case}_seg.b2nd"), mode="r").shape == (1,) + expected


def test_unlabeled_reference_cases_are_preprocessed_outside_nnunet_folders(planned_tiny):
    reference = layout.case_ids_in(planned_tiny.dataset_dir / layout.IMAGES_REF)
    assert len(reference) == 4
    for view in VIEWS:
        folder = unlabeled_folder(planned_tiny.paths, planned_tiny.dataset_name, planned_tiny.plans[view], "2d")
        assert folder.parent.name == "atso_unlabeled"
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            f"{c}{s}" for c in reference for s in (".b2nd", "_seg.b2nd", ".pkl"))
        expected = tuple(TINY_SHAPE[a] for a in TRANSPOSE_FORWARD[view])
        for case in reference:
            assert blosc2.open(str(folder / f"{case}.b2nd"), mode="r").shape == (1,) + expected
            with open(folder / f"{case}.pkl", "rb") as f:
                props = pickle.load(f)
            assert tuple(props["shape_before_cropping"]) == expected
            assert "bbox_used_for_cropping" in props and "class_locations" not in props
        assert not list(folder.parent.glob(".partial_*"))
    # test images are not preprocessed by default
    test_cases = layout.case_ids_in(planned_tiny.dataset_dir / layout.IMAGES_TS)
    folder = unlabeled_folder(planned_tiny.paths, planned_tiny.dataset_name, planned_tiny.plans["axial"], "2d")
    assert not any((folder / f"{c}.pkl").exists() for c in test_cases)


def test_second_call_does_nothing(planned_tiny):
    pre = planned_tiny.paths.preprocessed / planned_tiny.dataset_name
    before = {p: p.stat().st_mtime_ns for p in pre.rglob("*")}
    t0 = time.monotonic()
    again = plan_and_preprocess(planned_tiny.paths, planned_tiny.dataset_id, network=planned_tiny.network)
    assert time.monotonic() - t0 < 2.0
    assert again == planned_tiny.plans
    assert {p: p.stat().st_mtime_ns for p in pre.rglob("*")} == before
    for view in VIEWS:
        marker = completion_marker(planned_tiny.paths, planned_tiny.dataset_name, planned_tiny.plans[view], "2d")
        assert json.loads(marker.read_text())["network"] == planned_tiny.network.to_dict()


@pytest.mark.parametrize("kwargs, option", [
    ({"batch_size": 0}, "batch_size"),
    ({"max_features": "16"}, "max_features"),
    ({"n_stages": True}, "n_stages"),
    ({"patch_size": [12, -4]}, "patch_size"),
])
def test_network_override_validates_options(kwargs, option):
    with pytest.raises(InputError, match=f"network.{option}"):
        NetworkOverride(**kwargs)


def test_network_override_against_plans(planned_tiny):
    plans = _plans(planned_tiny, "axial")
    with pytest.raises(InputError, match="network.n_stages"):
        NetworkOverride(n_stages=9).apply(plans, "2d")
    with pytest.raises(InputError, match="network.patch_size"):
        NetworkOverride(patch_size=(40,)).apply(plans, "2d")
    with pytest.raises(InputError, match="network.patch_size"):
        NetworkOverride(patch_size=(41, 36)).apply(plans, "2d")
    with pytest.raises(InputError, match="unknown option"):
        NetworkOverride.from_dict({"features": 8})
    changed = NetworkOverride(n_stages=2, patch_size=(32, 32)).apply(plans, "2d")
    assert changed["configurations"]["2d"]["patch_size"] == [32, 32]
    assert plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["n_stages"] == 3  # input untouched
    assert NetworkOverride.from_dict(None) is None


def test_bad_arguments_are_input_errors(tiny_dataset, nnunet_paths, monkeypatch):
    with pytest.raises(InputError, match="unknown view"):
        plan_and_preprocess(nnunet_paths, 990, views=["axial", "oblique"])
    with pytest.raises(InputError, match="configuration"):
        plan_and_preprocess(nnunet_paths, 990, configuration="3d_lowres")
    with pytest.raises(InputError, match="Dataset991"):
        plan_and_preprocess(nnunet_paths, 991)
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    with pytest.raises(InputError, match="nnUNet_n_proc_DA"):
        plan_and_preprocess(nnunet_paths, 990)
