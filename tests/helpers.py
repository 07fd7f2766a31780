"""Shared test set-up: tiny seeded synthetic volumes in nnU-Net's raw layout, the fake prepare step,
loading a repository tool or benchmark script from its file, and reading back offline W&B runs
(``from helpers import ...``)."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Dict, Iterator, Mapping, Sequence

import numpy as np

from atso_nnunet.data import layout
from atso_nnunet.io import Geometry, write_array

REPO = Path(__file__).resolve().parents[1]
TINY_SHAPE = (12, 40, 36)          # z, y, x
TINY_SPACING = (1.5, 1.5, 3.0)     # x, y, z in mm (SimpleITK order)


def load_script(relative_path: str):
    """A script of the repository (not a package) imported from its file, e.g.
    ``load_script("scripts/make_paper_plans.py")``."""
    import importlib.util

    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_case(seed: int, shape: Sequence[int] = TINY_SHAPE):
    """A small CT-like volume (HU) with an ellipsoid 'organ' (label 1); deterministic by seed."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    c = [s / 2 + rng.uniform(-2, 2) for s in shape]
    r = [shape[0] / 3, shape[1] / 4 + rng.uniform(-1, 1), shape[2] / 4 + rng.uniform(-1, 1)]
    organ = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1
    body = ((y - shape[1] / 2) / (shape[1] / 2.2)) ** 2 + ((x - shape[2] / 2) / (shape[2] / 2.2)) ** 2 <= 1
    img = np.full(shape, -1000.0, np.float32)
    img[body] = 40
    img[organ] = 110
    img += rng.normal(0, 10, shape).astype(np.float32)
    return img.astype(np.int16), organ.astype(np.uint8)


def write_tiny_dataset(raw_root: Path, dataset_id: int = 990, n_labeled: int = 3, n_reference: int = 4,
                       n_test: int = 2, name: str = "Tiny", seed: int = 0, prefix: str = "tiny") -> Path:
    """Write an experiment dataset (see :mod:`atso_nnunet.data.layout`) of tiny ellipsoid cases
    ``<prefix>_000``, ``<prefix>_001``, ... (labeled, then reference, then test)."""
    ds = Path(raw_root) / layout.dataset_folder_name(dataset_id, name)
    geom = Geometry(tuple(reversed(TINY_SHAPE)), TINY_SPACING, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    roles = [("labeled", layout.IMAGES_TR, layout.LABELS_TR, n_labeled),
             ("reference", layout.IMAGES_REF, layout.LABELS_REF, n_reference),
             ("test", layout.IMAGES_TS, layout.LABELS_TS, n_test)]
    ids = {}
    k = 0
    for role, img_dir, lab_dir, n in roles:
        ids[role] = []
        for _ in range(n):
            case = f"{prefix}_{k:03d}"
            img, lab = tiny_case(seed * 1000 + k)
            write_array(img, geom, layout.image_path(ds, img_dir, case))
            write_array(lab, geom, layout.label_path(ds, lab_dir, case))
            ids[role].append(case)
            k += 1
    dj = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "pancreas": 1},
          "numTraining": n_labeled, "file_ending": layout.FILE_ENDING,
          "atso": {"reference": ids["reference"], "test": ids["test"]}}
    (ds / "dataset.json").write_text(json.dumps(dj, indent=2))
    return ds


def install_fake_prepare(monkeypatch) -> list:
    """What :func:`fake_prepare` does, for a fixture of a wider scope (``pytest.MonkeyPatch.context()``)."""
    from atso_nnunet.methods import get_method
    from atso_nnunet.run import driver
    from atso_nnunet.run import steps as runners
    from atso_nnunet.run.prepare import ensure_sources
    from atso_nnunet.data.materialize import find_cases, materialize
    from atso_nnunet.errors import InputError

    events = []

    def prepare(ctx, network):
        sources = ensure_sources(ctx.plan, ctx.paths)
        find_cases(sources, [*ctx.plan.labeled, *ctx.plan.reference, *ctx.plan.test])
        materialize(ctx.dataset_dir, sources, ctx.plan.labeled, ctx.plan.reference, ctx.plan.test)
        problems = get_method(ctx.plan.method).dataset_problems(ctx.dataset_dir, ctx.plan)
        if problems:
            raise InputError("; ".join(problems))

    real_evaluate = runners.PLUGIN_RUNNERS["evaluate"]

    def evaluate(ctx, step):
        events.append(("score", step.role, f"{ctx.run.root.parent.name}/{ctx.run.root.name}"))
        return real_evaluate(ctx, step)

    monkeypatch.setattr(driver, "prepare", prepare)
    monkeypatch.setitem(runners.PLUGIN_RUNNERS, "ingest", lambda ctx, step: events.append(("ingest",)) or {})
    monkeypatch.setitem(runners.PLUGIN_RUNNERS, "evaluate", evaluate)
    return events


def tiny_plan(tmp_path: Path, **over) -> Path:
    """A plan over Dataset990_Tiny-like sources written by write_tiny_dataset (as a source)."""
    plan = {
        "name": "tiny", "sources": ["Dataset990_Tiny"], "dataset_id": 991, "dataset_name": "TinyExp",
        "labeled": ["tiny_000", "tiny_001", "tiny_002"], "reference": ["tiny_003", "tiny_004", "tiny_005", "tiny_006"],
        "test": ["tiny_007", "tiny_008"], "method": "atso", "generations": 2, "views": ["axial"],
        "network": {"batch_size": 2, "max_features": 16, "n_stages": 3},
        "training": {"num_epochs": 1, "num_iterations_per_epoch": 2, "num_val_iterations_per_epoch": 1,
                     "final_validation": False, "test_time_augmentation": False},
    }
    plan.update(over)
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(plan))
    return p


def fake_plan(method="atso", generations=1, views=("axial",), **over):
    """The plan of the fake-nnU-Net runs (``fake_run`` fixture): the tiny dataset as Dataset991_FakeExp."""
    from atso_nnunet.plan import plan_from_dict

    data = {
        "name": "fake", "sources": ["Dataset990_Tiny"], "dataset_id": 991, "dataset_name": "FakeExp",
        "labeled": ["tiny_000", "tiny_001", "tiny_002"],
        "reference": ["tiny_003", "tiny_004", "tiny_005", "tiny_006"], "test": ["tiny_007", "tiny_008"],
        "method": method, "generations": 0 if method == "supervised" else generations, "views": list(views),
    }
    data.update(over)
    return plan_from_dict(data)


# wandb's .wandb files: a 7-byte header (":W&B", magic, version), then LevelDB log records in
# 32 KiB blocks: crc32 (4 bytes), length (2, little-endian), type (1: full, 2: first, 3: middle, 4: last).
_WANDB_HEADER, _WANDB_BLOCK, _WANDB_RECORD_HEADER = 7, 32768, 7


def _wandb_records(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a .wandb file"
    pos, parts = _WANDB_HEADER, b""
    while pos + _WANDB_RECORD_HEADER <= len(data):
        left_in_block = _WANDB_BLOCK - pos % _WANDB_BLOCK
        if left_in_block < _WANDB_RECORD_HEADER:      # the block's tail is padding
            pos += left_in_block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        payload = data[pos + 7:pos + 7 + length]
        pos += _WANDB_RECORD_HEADER + length
        if kind == 0 and length == 0:
            continue
        parts = payload if kind in (1, 2) else parts + payload
        if kind in (1, 4):
            yield parts


def offline_wandb_run(run_dir: Path) -> Dict[str, str]:
    """Name, group and project of an offline W&B run (``.../wandb/offline-run-*``), read from its
    ``run-<id>.wandb`` file (wandb has no Python reader for it since 0.19)."""
    from wandb.proto import wandb_internal_pb2

    (log,) = Path(run_dir).glob("run-*.wandb")
    for raw in _wandb_records(log):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "run":
            return {"name": record.run.display_name, "group": record.run.run_group, "project": record.run.project}
    raise AssertionError(f"no run record in {log}")


def offline_wandb_runs(run: Path) -> Dict[str, Dict[str, str]]:
    """The offline W&B runs of a run folder's trainings, by run name (one per model folder, checked)."""
    found = {}
    for folder in Path(run).glob("models/*/nnUNet_results/*/*/fold_*"):
        runs = list((folder / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, f"{folder}: {runs}"
        info = offline_wandb_run(runs[0])
        found[info["name"]] = info
    return found


def offline_wandb_env(base: Mapping[str, str], home: Path, project: str, group: str) -> Dict[str, str]:
    """``base`` without W&B settings of its own, plus nnU-Net's W&B logging, offline, under ``home``."""
    env = {k: v for k, v in base.items() if not k.startswith(("WANDB_", "nnUNet_wandb_"))}
    env.update({"nnUNet_wandb_enabled": "1", "nnUNet_wandb_mode": "offline", "nnUNet_wandb_project": project,
                "WANDB_MODE": "offline", "WANDB_RUN_GROUP": group, "WANDB_SILENT": "true",
                "WANDB_DIR": str(home), "WANDB_CACHE_DIR": str(home / "cache"),
                "WANDB_CONFIG_DIR": str(home / "config"), "WANDB_DATA_DIR": str(home / "data")})
    return env
