"""Reusable nnU-Net fixtures: the tiny dataset planned and preprocessed for all three views.

Use from a test module with ``pytest_plugins = ["fixtures_nnunet"]`` (or add that line to
``tests/conftest.py`` once for the whole suite). The fixture is session-scoped: it plans and
preprocesses once per test session (about 40-60 s on 2 CPU cores) and must be treated as
read-only. Tests that train or predict write into their own results folder::

    def test_x(planned_tiny, tmp_path):
        paths = planned_tiny.with_results(tmp_path / "results")
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import pytest

from atso_nnunet.paths import NnUNetPaths
from atso_nnunet.nnunet.planning import NetworkOverride, plan_and_preprocess
from helpers import write_tiny_dataset

TINY_DATASET_ID = 990
# small enough for CPU: 3 stages (what nnU-Net plans for the 12-slice views anyway), 16 features
TINY_NETWORK = NetworkOverride(batch_size=2, max_features=16, n_stages=3)


@dataclass(frozen=True)
class PlannedDataset:
    """A raw dataset with its three views planned and preprocessed (configuration ``2d``).

    Attributes:
        paths: nnU-Net folders (``results`` is shared; prefer :meth:`with_results`).
        dataset_id: 990.
        dataset_dir: the raw dataset folder ``Dataset990_Tiny``.
        plans: view -> plans identifier.
        configuration: ``2d``.
        network: the network override used.
        seconds: how long planning and preprocessing took.
    """

    paths: NnUNetPaths
    dataset_id: int
    dataset_dir: Path
    plans: Dict[str, str]
    configuration: str
    network: NetworkOverride
    seconds: float

    @property
    def dataset_name(self) -> str:
        return self.dataset_dir.name

    def with_results(self, results: Path) -> NnUNetPaths:
        """The same raw / preprocessed folders with a private results folder."""
        results = Path(results)
        results.mkdir(parents=True, exist_ok=True)
        return dataclasses.replace(self.paths, results=results)


@pytest.fixture(scope="session")
def planned_tiny(tmp_path_factory) -> PlannedDataset:
    """Dataset990_Tiny (3 labeled, 4 reference, 2 test) planned + preprocessed for all views, once."""
    root = tmp_path_factory.mktemp("planned_tiny")
    paths = NnUNetPaths.under(root)
    paths.makedirs()
    dataset_dir = write_tiny_dataset(paths.raw, dataset_id=TINY_DATASET_ID)
    t0 = time.monotonic()
    plans = plan_and_preprocess(paths, TINY_DATASET_ID, network=TINY_NETWORK, num_processes=1)
    return PlannedDataset(paths, TINY_DATASET_ID, dataset_dir, plans, "2d", TINY_NETWORK, time.monotonic() - t0)
