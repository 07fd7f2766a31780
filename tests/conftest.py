"""pytest set-up: the ``--slurm`` option and the shared fixtures (helpers live in ``helpers.py``)."""
from __future__ import annotations

from pathlib import Path

import pytest

from atso_nnunet.paths import NnUNetPaths
from helpers import install_fake_prepare, write_tiny_dataset


def pytest_addoption(parser):
    parser.addoption("--slurm", action="store_true",
                     help="also run the tests marked slurm_cluster, against the SLURM cluster on this machine "
                          "(make test-slurm starts one)")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slurm_cluster`` run only with ``--slurm``: ``pytest`` alone never selects them."""
    if config.getoption("--slurm"):
        return
    kept = [item for item in items if item.get_closest_marker("slurm_cluster") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


@pytest.fixture
def nnunet_paths(tmp_path) -> NnUNetPaths:
    paths = NnUNetPaths.under(tmp_path / "nnunet")
    paths.makedirs()
    return paths


@pytest.fixture
def tiny_dataset(nnunet_paths) -> Path:
    """Dataset990_Tiny: 3 labeled, 4 reference, 2 test tiny cases (with ground truth)."""
    return write_tiny_dataset(nnunet_paths.raw)


@pytest.fixture
def fake_prepare(monkeypatch):
    """prepare = sources + experiment dataset only (no nnU-Net planning); ingestion recorded; test
    labels read only when scoring E (recorded with the time they were read)."""
    return install_fake_prepare(monkeypatch)


@pytest.fixture
def fake_run(tmp_path, nnunet_paths, monkeypatch):
    """A prepared experiment dataset (as the driver's prepare would leave it) and a fake nnU-Net."""
    from atso_nnunet.run import steps as runners
    from atso_nnunet.run.driver import PREPARE, DriverOptions, run_experiment
    from atso_nnunet.run.rundir import RunDir
    from fake_nnunet import FakeNnUNetExecutor

    write_tiny_dataset(nnunet_paths.raw, dataset_id=991, name="FakeExp")
    ingested = []
    # ingestion needs nnU-Net's preprocessed data: record the call instead
    monkeypatch.setitem(runners.PLUGIN_RUNNERS, "ingest",
                        lambda ctx, step: ingested.append(step.id) or {"empty_cases": []})

    def run(plan, **kw):
        run_dir = tmp_path / "run"
        RunDir(run_dir).mark_done(PREPARE, 0.0)
        ex = kw.pop("executor", None) or FakeNnUNetExecutor()
        rep = run_experiment(plan, DriverOptions(run_dir=run_dir, paths=nnunet_paths, executor=ex, **kw))
        return rep, ex, RunDir(run_dir)

    run.ingested = ingested
    return run
