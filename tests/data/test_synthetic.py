"""Synthetic CT generator: determinism, geometry, labels, intensities, dataset writing."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from atso_nnunet.cli import synth as synth_cli
from atso_nnunet.data import layout, synthetic
from atso_nnunet.data.checks import check_raw_dataset
from atso_nnunet.data.synthetic import SyntheticConfig, generate_case, write_source_dataset
from atso_nnunet.errors import InputError
from atso_nnunet.io import read_array

TINY = (24, 24, 8)        # x, y, z
SMALL = (64, 64, 24)      # large enough for anatomy statistics, still ~0.05 s per case


def test_same_seed_gives_identical_arrays_and_other_seed_differs():
    cfg = SyntheticConfig(domain="B", shape=TINY, seed=7)
    img1, lab1, geo1 = generate_case(cfg, 2)
    img2, lab2, geo2 = generate_case(SyntheticConfig(domain="B", shape=TINY, seed=7), 2)
    np.testing.assert_array_equal(img1, img2)
    np.testing.assert_array_equal(lab1, lab2)
    assert geo1 == geo2
    other, _, _ = generate_case(SyntheticConfig(domain="B", shape=TINY, seed=8), 2)
    assert not np.array_equal(img1, other)
    next_case, _, _ = generate_case(cfg, 3)
    assert not np.array_equal(img1, next_case)


@pytest.mark.parametrize("domain, spacing", [("A", (0.8, 0.8, 2.5)), ("B", (0.8, 0.8, 5.0))])
def test_geometry_and_dtypes_per_domain(domain, spacing):
    cfg = SyntheticConfig(domain=domain, shape=TINY)
    assert cfg.spacing == spacing
    img, lab, geo = generate_case(cfg, 0)
    assert img.shape == lab.shape == (8, 24, 24)          # (z, y, x)
    assert img.dtype == np.int16 and lab.dtype == np.uint8
    assert geo.size == TINY and geo.spacing == spacing
    assert geo.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def test_domain_defaults_differ_where_the_domains_differ():
    a, b = SyntheticConfig(domain="A"), SyntheticConfig(domain="B")
    assert a.shape == (160, 160, 64)
    assert b.spacing[2] > a.spacing[2]
    assert b.noise_sigma > a.noise_sigma
    assert abs(b.hu_offset - a.hu_offset) >= 10
    assert (a.lesions, b.lesions) == (False, True)
    assert a.labels == {"background": 0, "pancreas": 1}
    assert b.labels == {"background": 0, "pancreas": 1, "tumour": 2}


def test_domain_a_labels_are_organ_only_with_a_reasonable_size():
    cfg = SyntheticConfig(domain="A", shape=SMALL, seed=1)
    for i in range(3):
        _, lab, _ = generate_case(cfg, i)
        assert set(np.unique(lab)) == {0, 1}
        fraction = (lab > 0).mean()
        assert 5e-4 < fraction < 2e-2, fraction
        # one main connected organ, spanning several slices
        assert len(np.unique(np.nonzero(lab)[0])) >= 3


def test_domain_b_has_lesions_inside_the_organ():
    cfg = SyntheticConfig(domain="B", shape=SMALL, seed=1)
    for i in range(3):
        img, lab, _ = generate_case(cfg, i)
        assert set(np.unique(lab)) == {0, 1, 2}
        lesions, n = ndimage.label(lab == 2)
        for k in range(1, n + 1):
            ring = ndimage.binary_dilation(lesions == k) & (lesions != k)
            assert (lab[ring] == 1).any(), "every lesion touches the organ"
        assert (lab == 2).sum() < (lab == 1).sum()
        assert np.median(img[lab == 2]) < np.median(img[lab == 1]), "lesions are hypodense"


def test_tiny_volumes_still_have_foreground():
    for domain in ("A", "B"):
        for i in range(5):
            _, lab, _ = generate_case(SyntheticConfig(domain=domain, shape=TINY, seed=0), i)
            assert (lab == 1).any()


@pytest.mark.parametrize("domain", ["A", "B"])
def test_hounsfield_ranges_are_plausible(domain):
    img, lab, _ = generate_case(SyntheticConfig(domain=domain, shape=SMALL, seed=2), 0)
    assert img.min() >= -1024 and img.max() <= 3071
    assert np.median(img[:, :3, :3]) < -900, "air outside the body"
    assert img.max() > 400, "bone"
    assert ((img > -150) & (img < -50)).mean() > 0.02, "fat"
    assert 60 < np.median(img[lab == 1]) < 160, "organ"


@pytest.mark.parametrize("domain", ["A", "B"])
def test_organ_is_close_in_intensity_to_its_surroundings(domain):
    # In-plane shell of 2 voxels around the organ: a threshold cannot separate them.
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    for i in range(3):
        img, lab, _ = generate_case(SyntheticConfig(domain=domain, shape=SMALL, seed=3), i)
        organ = lab > 0
        shell = ndimage.binary_dilation(organ, structure, iterations=2) & ~organ
        diff = np.median(img[lab == 1]) - np.median(img[shell])
        assert abs(diff) < 30, (domain, i, diff)


def test_config_validation_names_the_option():
    with pytest.raises(InputError, match="domain"):
        SyntheticConfig(domain="C")
    with pytest.raises(InputError, match="shape"):
        SyntheticConfig(shape=(8, 8, 8))
    with pytest.raises(InputError, match="shape"):
        SyntheticConfig(shape=(24, 24))
    with pytest.raises(InputError, match="spacing"):
        SyntheticConfig(spacing=(0.8, 0.0, 2.5))
    with pytest.raises(InputError, match="seed"):
        SyntheticConfig(seed=-1)
    with pytest.raises(InputError, match="noise_sigma"):
        SyntheticConfig(noise_sigma=-1)
    cfg = SyntheticConfig(domain="B", shape=TINY, seed=4)
    assert SyntheticConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_write_source_dataset_is_complete_checked_and_bit_identical(tmp_path):
    cfg = SyntheticConfig(domain="B", shape=TINY, seed=5)
    ds = write_source_dataset(tmp_path / "raw1", 980, "SynthB", 3, cfg)
    assert ds.name == "Dataset980_SynthB"
    assert sorted(p.name for p in (tmp_path / "raw1").iterdir()) == ["Dataset980_SynthB"], "no temp folder left"
    assert layout.case_ids_in(ds / layout.IMAGES_TR) == ["synB_0000", "synB_0001", "synB_0002"]
    dj = json.loads((ds / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "pancreas": 1, "tumour": 2}
    assert dj["numTraining"] == 3 and dj["channel_names"] == {"0": "CT"} and dj["file_ending"] == ".nii.gz"
    assert dj["synthetic"]["domain"] == "B" and dj["synthetic"]["shape"] == list(TINY)
    summary = check_raw_dataset(ds)
    assert summary.cases["labeled"] == 3 and summary.with_labels["labeled"] == 3

    img, geo = read_array(layout.image_path(ds, layout.IMAGES_TR, "synB_0001"))
    expected, _, expected_geo = generate_case(cfg, 1)
    np.testing.assert_array_equal(img, expected)
    assert geo.matches(expected_geo)

    again = write_source_dataset(tmp_path / "raw2", 980, "SynthB", 3, cfg)
    for f in sorted(ds.rglob("*.nii.gz")):
        assert f.read_bytes() == (again / f.relative_to(ds)).read_bytes(), f


def test_write_source_dataset_refuses_to_overwrite_unless_asked(tmp_path):
    cfg = SyntheticConfig(domain="A", shape=TINY)
    ds = write_source_dataset(tmp_path, 981, "SynthA", 1, cfg, case_prefix="x")
    marker = ds / "keep.txt"
    marker.write_text("user data")
    with pytest.raises(InputError, match="already exists"):
        write_source_dataset(tmp_path, 981, "SynthA", 2, cfg)
    assert marker.exists()
    write_source_dataset(tmp_path, 981, "SynthA", 2, cfg, overwrite=True)
    assert not marker.exists()
    assert layout.case_ids_in(ds / layout.IMAGES_TR) == ["synA_0000", "synA_0001"]
    with pytest.raises(InputError, match="dataset id 981"):
        write_source_dataset(tmp_path, 981, "Other", 1, cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset981_SynthA"]


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    real = synthetic.generate_case

    def failing(config, index):
        if index == 1:
            raise KeyboardInterrupt
        return real(config, index)

    monkeypatch.setattr(synthetic, "generate_case", failing)
    with pytest.raises(KeyboardInterrupt):
        write_source_dataset(tmp_path, 982, "Broken", 3, SyntheticConfig(shape=TINY))
    assert list(tmp_path.iterdir()) == []


def test_synth_cli(tmp_path, capsys):
    argv = ["--raw", str(tmp_path), "--dataset-id", "983", "--name", "CliB", "--cases", "2", "--domain", "B",
            "--seed", "1", "--shape", "24", "24", "8"]
    assert synth_cli.main(argv) == 0
    ds = tmp_path / "Dataset983_CliB"
    assert str(ds) in capsys.readouterr().out
    assert layout.case_ids_in(ds / layout.IMAGES_TR) == ["synB_0000", "synB_0001"]
    assert synth_cli.main(argv) == 2                      # exists: InputError -> exit code 2
    assert synth_cli.main(argv + ["--overwrite"]) == 0
    assert synth_cli.main(["--raw", str(tmp_path), "--dataset-id", "984", "--shape", "4", "4", "4"]) == 2
