"""Fusion: majority vote, mean probability and folder fusion, with hand-computed results."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from atso_nnunet.pseudolabels import fuse as fusion
from atso_nnunet.errors import InputError
from atso_nnunet.pseudolabels.fuse import fuse_folders
from atso_nnunet.pseudolabels.vote import majority_vote, mean_probability, ties_possible
from atso_nnunet.io import Geometry, read_array, write_array

# A rotated, offset, anisotropic geometry: 30 degrees about z.
_C, _S = np.cos(np.pi / 6), np.sin(np.pi / 6)
GEOMETRY = Geometry(size=(4, 3, 2), spacing=(0.7, 0.8, 2.5), origin=(-12.5, 30.25, 101.0),
                    direction=(_C, -_S, 0.0, _S, _C, 0.0, 0.0, 0.0, 1.0))
SHAPE = (2, 3, 4)  # z, y, x


def _stored_geometry(path: Path) -> Geometry:
    return Geometry.of(sitk.ReadImage(str(path)))


# ---------------------------------------------------------------- arrays

def test_vote_three_views_binary():
    a = np.array([[0, 1, 1, 0, 1]])
    b = np.array([[1, 1, 0, 0, 0]])
    c = np.array([[0, 1, 0, 1, 1]])
    fused = majority_vote([a, b, c], num_classes=2)
    np.testing.assert_array_equal(fused, [[0, 1, 0, 0, 1]])
    assert fused.dtype == np.uint8 and fused.shape == a.shape


def test_vote_accepts_generator():
    maps = (np.full((2, 2), v) for v in (1, 1, 0))
    np.testing.assert_array_equal(majority_vote(maps, num_classes=2), np.ones((2, 2)))


def test_vote_three_voters_three_classes_three_way_tie_without_probabilities_is_told(caplog):
    a = np.array([2, 2, 1, 0, 0])
    b = np.array([2, 1, 1, 2, 1])
    c = np.array([0, 1, 2, 1, 2])
    # voxel 0: 2 wins (2 votes); 1: 1 wins; 2: 1 wins; 3, 4: 0/2/1 one vote each -> lowest = 0, with a warning
    with caplog.at_level(logging.INFO, logger="atso_nnunet.pseudolabels.vote"):
        np.testing.assert_array_equal(majority_vote([a, b, c], num_classes=3), [2, 1, 1, 0, 0])
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1
    assert "2 tied voxel(s) among 3 voters (2 of them three-way or more) and no probabilities" in warning[0].message


def test_vote_three_voters_three_classes_three_way_tie_broken_by_summed_probability(caplog):
    """Issue 29: one vote each for classes 0, 1 and 2; the summed probabilities decide, not the class order."""
    maps = [np.array([0, 0, 1]), np.array([1, 1, 1]), np.array([2, 2, 2])]
    probs = [np.array([[0.5, 0.4, 0.1], [0.3, 0.3, 0.8], [0.2, 0.3, 0.1]]),     # (class, voxel)
             np.array([[0.2, 0.2, 0.1], [0.6, 0.4, 0.8], [0.2, 0.4, 0.1]]),
             np.array([[0.2, 0.1, 0.1], [0.3, 0.2, 0.1], [0.5, 0.7, 0.8]])]
    # voxel 0: sums 0.9 / 1.2 / 0.9 -> 1; voxel 1: 0.7 / 0.9 / 1.4 -> 2; voxel 2: class 1 has 2 votes -> 1
    with caplog.at_level(logging.INFO, logger="atso_nnunet.pseudolabels.vote"):
        np.testing.assert_array_equal(majority_vote(maps, num_classes=3, probabilities=probs), [1, 2, 1])
    assert not caplog.records
    # equal summed probabilities as well (1.0 each): the lowest class, and a warning says so
    even = [np.array([[0.5], [0.25], [0.25]]), np.array([[0.25], [0.5], [0.25]]), np.array([[0.25], [0.25], [0.5]])]
    with caplog.at_level(logging.WARNING, logger="atso_nnunet.pseudolabels.vote"):
        assert majority_vote([np.array([c]) for c in (0, 1, 2)], 3, probabilities=even).tolist() == [0]
    assert "1 tied voxel(s) whose tied classes also have equal summed probabilities" in caplog.records[-1].message


def test_ties_possible_with_even_voters_or_three_classes():
    assert not ties_possible(1, 5) and not ties_possible(3, 2) and not ties_possible(5, 2)
    assert ties_possible(2, 2) and ties_possible(6, 2) and ties_possible(3, 3) and ties_possible(5, 4)


def test_vote_even_voters_tie_lowest_is_conservative():
    six = [np.array([1, 1, 0]), np.array([1, 0, 0]), np.array([1, 1, 0]),
           np.array([0, 0, 1]), np.array([1, 1, 1]), np.array([0, 0, 1])]
    # votes for class 1: 4, 3, 3 of 6 -> 1, tie, tie -> background
    np.testing.assert_array_equal(majority_vote(six, num_classes=2, tie_break="lowest"), [1, 0, 0])


def test_vote_tie_broken_by_summed_probability():
    a, b = np.array([0, 1, 1]), np.array([1, 0, 1])
    pa = np.array([[0.9, 0.45, 0.1], [0.1, 0.55, 0.9]])
    pb = np.array([[0.2, 0.6, 0.3], [0.8, 0.4, 0.7]])
    # voxel 0: class 0 sums 1.1, class 1 0.9 -> 0; voxel 1: 1.05 vs 0.95 -> 0; voxel 2: no tie -> 1
    np.testing.assert_array_equal(majority_vote([a, b], 2, probabilities=[pa, pb]), [0, 0, 1])
    pb2 = np.array([[0.05, 0.3, 0.3], [0.95, 0.7, 0.7]])
    # voxel 0: 0.95 vs 1.05 -> 1; voxel 1: 0.75 vs 1.25 -> 1
    np.testing.assert_array_equal(majority_vote([a, b], 2, probabilities=[pa, pb2], tie_break="auto"), [1, 1, 1])
    # "lowest" ignores the probabilities
    np.testing.assert_array_equal(majority_vote([a, b], 2, probabilities=[pa, pb2], tie_break="lowest"), [0, 0, 1])


def test_vote_probability_only_among_tied_classes():
    # classes 1 and 2 tie with 2 votes each; class 0 has the highest probability but only 1 vote
    maps = [np.array([1]), np.array([1]), np.array([2]), np.array([2]), np.array([0])]
    probs = [np.array([[0.5], [0.2], [0.3]]), np.array([[0.5], [0.2], [0.3]]), np.array([[0.5], [0.1], [0.4]]),
             np.array([[0.5], [0.1], [0.4]]), np.array([[0.9], [0.05], [0.05]])]
    np.testing.assert_array_equal(majority_vote(maps, 3, probabilities=probs), [2])


def test_vote_probability_required_when_asked():
    with pytest.raises(ValueError, match="probability"):
        majority_vote([np.array([0]), np.array([1])], 2, tie_break="probability")
    # no tie: no probabilities needed
    np.testing.assert_array_equal(majority_vote([np.array([1])] * 2, 2, tie_break="probability"), [1])


def test_vote_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        majority_vote([np.array([0, 2])], num_classes=2)
    with pytest.raises(ValueError, match="shape"):
        majority_vote([np.zeros(3, int), np.zeros(4, int)], num_classes=2)
    with pytest.raises(ValueError, match="integer"):
        majority_vote([np.zeros(3)], num_classes=2)
    with pytest.raises(ValueError, match="tie_break"):
        majority_vote([np.zeros(3, int)], 2, tie_break="coin")
    with pytest.raises(ValueError, match="no label maps"):
        majority_vote([], num_classes=2)


def test_mean_probability_by_hand():
    p1 = np.array([[0.6, 0.2, 0.5], [0.3, 0.3, 0.1], [0.1, 0.5, 0.4]])
    p2 = np.array([[0.1, 0.2, 0.5], [0.8, 0.2, 0.1], [0.1, 0.6, 0.4]])
    # means: voxel 0 (.35, .55, .1) -> 1; voxel 1 (.2, .25, .55) -> 2; voxel 2 (.5, .1, .4) -> 0
    np.testing.assert_array_equal(mean_probability([p1, p2]), [1, 2, 0])
    # mean vs vote differ: confident minority wins the mean
    q1 = np.array([[0.45], [0.55]])
    q2 = np.array([[0.45], [0.55]])
    q3 = np.array([[0.99], [0.01]])
    assert mean_probability([q1, q2, q3]).tolist() == [0]
    labels = [q.argmax(0) for q in (q1, q2, q3)]
    assert majority_vote(labels, 2).tolist() == [1]


def test_mean_probability_errors():
    with pytest.raises(ValueError, match="shape"):
        mean_probability([np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match="no probability"):
        mean_probability([])


# ---------------------------------------------------------------- folders

def _write_views(tmp_path: Path, maps: dict, geometry: Geometry = GEOMETRY, probabilities: dict = None):
    """maps: {view: {case: array}} -> folders tmp_path/<view>/<case>.nii.gz (+ .npz)."""
    folders = []
    for view, cases in maps.items():
        d = tmp_path / view
        for case, arr in cases.items():
            write_array(np.asarray(arr, np.uint8), geometry, d / f"{case}.nii.gz")
            if probabilities and view in probabilities and case in probabilities[view]:
                np.savez_compressed(d / f"{case}.npz", probabilities=probabilities[view][case])
        folders.append(d)
    return folders


def _random_maps(seed: int, n_views: int = 3, cases=("c0", "c1")):
    rng = np.random.default_rng(seed)
    return {f"v{i}": {c: rng.integers(0, 2, SHAPE) for c in cases} for i in range(n_views)}


def test_fuse_folders_vote_matches_array_vote_and_keeps_geometry(tmp_path):
    maps = _random_maps(0)
    folders = _write_views(tmp_path, maps)
    out = fuse_folders(folders, tmp_path / "fused", progress=False)
    assert [p.name for p in out] == ["c0.nii.gz", "c1.nii.gz"]
    for case in ("c0", "c1"):
        arr, geom = read_array(tmp_path / "fused" / f"{case}.nii.gz")
        expected = majority_vote([maps[v][case] for v in maps], 2)
        np.testing.assert_array_equal(arr, expected)
        assert geom == _stored_geometry(folders[0] / f"{case}.nii.gz")  # exact, not approximate
        assert geom.matches(GEOMETRY, atol=1e-5)


def test_fuse_folders_takes_reference_geometry_exactly(tmp_path):
    maps = _random_maps(1, cases=("c0",))
    folders = _write_views(tmp_path, maps)
    ref = write_array(np.zeros(SHAPE, np.int16), GEOMETRY, tmp_path / "images" / "c0_0000.nii.gz")
    fuse_folders(folders, tmp_path / "fused", reference_images={"c0": ref}, progress=False)
    assert _stored_geometry(tmp_path / "fused" / "c0.nii.gz") == _stored_geometry(ref)


def test_fuse_folders_reference_mismatch(tmp_path):
    folders = _write_views(tmp_path, _random_maps(1, cases=("c0",)))
    other = Geometry(GEOMETRY.size, GEOMETRY.spacing, (0.0, 0.0, 0.0), GEOMETRY.direction)
    ref = write_array(np.zeros(SHAPE, np.int16), other, tmp_path / "images" / "c0_0000.nii.gz")
    with pytest.raises(InputError, match=r"c0.*origin"):
        fuse_folders(folders, tmp_path / "fused", reference_images={"c0": ref}, progress=False)


def test_fuse_folders_geometry_mismatch_names_case_and_files(tmp_path):
    folders = _write_views(tmp_path, _random_maps(2, cases=("c0",)))
    moved = Geometry(GEOMETRY.size, (0.7, 0.8, 3.0), GEOMETRY.origin, GEOMETRY.direction)
    write_array(np.zeros(SHAPE, np.uint8), moved, folders[2] / "c0.nii.gz")
    with pytest.raises(InputError) as e:
        fuse_folders(folders, tmp_path / "fused", progress=False)
    assert "c0" in str(e.value) and str(folders[2] / "c0.nii.gz") in str(e.value) and "spacing" in str(e.value)
    assert not (tmp_path / "fused" / "c0.nii.gz").exists()


def test_fuse_folders_missing_case_names_case_and_folder(tmp_path):
    folders = _write_views(tmp_path, _random_maps(3))
    (folders[1] / "c1.nii.gz").unlink()
    with pytest.raises(InputError) as e:
        fuse_folders(folders, tmp_path / "fused", progress=False)
    assert "c1 missing in" in str(e.value) and str(folders[1]) in str(e.value)
    with pytest.raises(InputError, match="c9"):
        fuse_folders(folders, tmp_path / "fused", cases=["c9"], progress=False)
    # an explicit subset present everywhere works
    assert [p.name for p in fuse_folders(folders, tmp_path / "fused", cases=["c0"], progress=False)] == ["c0.nii.gz"]


def test_fuse_folders_ties_use_probabilities_when_present(tmp_path):
    a = np.zeros(SHAPE, np.uint8)
    b = np.ones(SHAPE, np.uint8)  # every voxel ties 1:1
    p_a = np.stack([np.full(SHAPE, 0.6), np.full(SHAPE, 0.4)]).astype(np.float32)
    p_b = np.stack([np.full(SHAPE, 0.3), np.full(SHAPE, 0.7)]).astype(np.float32)
    p_b[:, 0, 0, 0] = (0.9, 0.1)  # voxel (0,0,0): class 0 sums 1.5 vs 0.5
    folders = _write_views(tmp_path, {"v0": {"c0": a}, "v1": {"c0": b}},
                           probabilities={"v0": {"c0": p_a}, "v1": {"c0": p_b}})
    fuse_folders(folders, tmp_path / "auto", progress=False)
    fused, _ = read_array(tmp_path / "auto" / "c0.nii.gz")
    expected = np.ones(SHAPE, np.uint8)
    expected[0, 0, 0] = 0
    np.testing.assert_array_equal(fused, expected)
    fuse_folders(folders, tmp_path / "low", tie_break="lowest", progress=False)
    np.testing.assert_array_equal(read_array(tmp_path / "low" / "c0.nii.gz")[0], np.zeros(SHAPE))
    (folders[1] / "c0.npz").unlink()
    with pytest.raises(InputError, match="c0.*tied"):
        fuse_folders(folders, tmp_path / "prob", tie_break="probability", progress=False)


def test_fuse_folders_says_how_many_ties_went_to_the_lowest_class_without_probabilities(tmp_path, caplog):
    """Issue 29: three views of a three-class task, one vote each everywhere: no probabilities -> a warning
    with the counts, never a silent background."""
    folders = _write_views(tmp_path, {f"v{c}": {"c0": np.full(SHAPE, c, np.uint8)} for c in range(3)})
    with caplog.at_level(logging.WARNING, logger="atso_nnunet.pseudolabels.fuse"):
        fuse_folders(folders, tmp_path / "fused", num_classes=3, progress=False)
    np.testing.assert_array_equal(read_array(tmp_path / "fused" / "c0.nii.gz")[0], np.zeros(SHAPE))
    message = " ".join(r.message for r in caplog.records)
    assert f"{np.prod(SHAPE)} tied voxel(s) in 1 case(s) (c0) among 3 voters, {np.prod(SHAPE)} of them three-way" \
           in message and "no probabilities" in message


def test_fuse_folders_mean(tmp_path):
    rng = np.random.default_rng(4)
    probs = {}
    maps = {}
    for v in ("v0", "v1", "v2"):
        p = rng.random((3,) + SHAPE).astype(np.float32)
        p /= p.sum(0, keepdims=True)
        probs[v] = {"c0": p}
        maps[v] = {"c0": p.argmax(0)}
    folders = _write_views(tmp_path, maps, probabilities=probs)
    fuse_folders(folders, tmp_path / "fused", method="mean", progress=False)
    fused, geom = read_array(tmp_path / "fused" / "c0.nii.gz")
    expected = (probs["v0"]["c0"] + probs["v1"]["c0"] + probs["v2"]["c0"]).argmax(0)
    np.testing.assert_array_equal(fused, expected)
    assert geom == _stored_geometry(folders[0] / "c0.nii.gz")


def test_fuse_folders_mean_rejects_wrong_axis_order(tmp_path):
    p = np.full((2,) + SHAPE[::-1], 0.5, np.float32)  # (C, x, y, z): wrong order
    folders = _write_views(tmp_path, {"v0": {"c0": np.zeros(SHAPE)}}, probabilities={"v0": {"c0": p}})
    with pytest.raises(InputError, match=r"c0.*\(C, 2, 3, 4\)"):
        fuse_folders(folders, tmp_path / "fused", method="mean", progress=False)


def test_fuse_folders_skip_existing(tmp_path, monkeypatch):
    folders = _write_views(tmp_path, _random_maps(5))
    out = tmp_path / "fused"
    fuse_folders(folders, out, cases=["c0"], progress=False)
    before = (out / "c0.nii.gz").stat().st_mtime_ns
    calls = []
    original = fusion._fuse_vote
    monkeypatch.setattr(fusion, "_fuse_vote", lambda case, *a: calls.append(case) or original(case, *a))
    result = fuse_folders(folders, out, skip_existing=True, progress=False)
    assert calls == ["c1"]
    assert [p.name for p in result] == ["c0.nii.gz", "c1.nii.gz"]
    assert (out / "c0.nii.gz").stat().st_mtime_ns == before


def test_fuse_folders_streams_case_by_case(tmp_path, monkeypatch):
    folders = _write_views(tmp_path, _random_maps(6, cases=("c0", "c1", "c2")))
    events = []
    real_read, real_write = fusion.read_array, fusion.write_array

    def read(path):
        events.append(("read", Path(path).name))
        return real_read(path)

    def write(array, geometry, path):
        events.append(("write", Path(path).name))
        return real_write(array, geometry, path)

    monkeypatch.setattr(fusion, "read_array", read)
    monkeypatch.setattr(fusion, "write_array", write)
    fuse_folders(folders, tmp_path / "fused", progress=False)
    expected = []
    for case in ("c0", "c1", "c2"):
        expected += [("read", f"{case}.nii.gz")] * 3 + [("write", f"{case}.nii.gz")]
    assert events == expected  # each case is read, fused and written before the next is opened


def test_fuse_folders_num_classes_from_dataset_json(tmp_path):
    folders = _write_views(tmp_path, {"v0": {"c0": np.full(SHAPE, 3)}})
    (folders[0] / "dataset.json").write_text('{"labels": {"background": 0, "pancreas": 1}}')
    with pytest.raises(InputError, match=r"c0.*\[0, 2\)"):
        fuse_folders(folders, tmp_path / "fused", progress=False)
