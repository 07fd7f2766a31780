"""nnU-Net's Weights & Biases logging through the driver: one offline W&B run per training, named
after its step, warm workers included (skipped where ``wandb`` is not installed: ``pip install
atso_nnunet[wandb]``; the test extra installs it)."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator

import pytest

from helpers import tiny_plan, write_tiny_dataset

wandb_proto = pytest.importorskip("wandb.proto.wandb_internal_pb2", reason="wandb is not installed")

# wandb's .wandb files: a 7-byte header (":W&B", magic, version), then LevelDB log records in
# 32 KiB blocks: crc32 (4 bytes), length (2, little-endian), type (1: full, 2: first, 3: middle, 4: last).
_HEADER, _BLOCK, _RECORD_HEADER = 7, 32768, 7


def _records(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a .wandb file"
    pos, parts = _HEADER, b""
    while pos + _RECORD_HEADER <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _RECORD_HEADER:      # the block's tail is padding
            pos += left_in_block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        payload = data[pos + 7:pos + 7 + length]
        pos += _RECORD_HEADER + length
        if kind == 0 and length == 0:
            continue
        parts = payload if kind in (1, 2) else parts + payload
        if kind in (1, 4):
            yield parts


def offline_run_info(run_dir: Path) -> Dict[str, str]:
    """Name, group and project of an offline W&B run, from its ``run-<id>.wandb`` file."""
    (log,) = run_dir.glob("run-*.wandb")
    for raw in _records(log):
        record = wandb_proto.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "run":
            return {"name": record.run.display_name, "group": record.run.run_group, "project": record.run.project}
    raise AssertionError(f"no run record in {log}")


@pytest.mark.e2e
def test_every_training_of_a_tiny_run_logs_an_offline_wandb_run_named_after_its_step(tmp_path):
    nn = tmp_path / "nn"
    write_tiny_dataset(nn / "nnUNet_raw", dataset_id=990, name="Tiny", n_labeled=9, n_reference=0, n_test=0)
    # the full ATSO schedule of one generation: M0, the two half-models side by side, the final model
    plan = tiny_plan(tmp_path, generations=1,
                     method_options={"atso": {"test_model": "ensemble", "final_labels": "last"}})
    run = tmp_path / "run"
    wandb_home = tmp_path / "wandb_home"
    env = {k: v for k, v in os.environ.items()
           if k != "nnUNet_n_proc_DA" and not k.startswith(("WANDB_", "nnUNet_wandb_", "ATSO_"))}
    env.update({"nnUNet_wandb_enabled": "1", "nnUNet_wandb_mode": "offline", "nnUNet_wandb_project": "atso-test",
                "WANDB_MODE": "offline", "WANDB_RUN_GROUP": "tiny-run", "WANDB_SILENT": "true",
                "WANDB_DIR": str(wandb_home), "WANDB_CACHE_DIR": str(wandb_home / "cache"),
                "WANDB_CONFIG_DIR": str(wandb_home / "config"), "WANDB_DATA_DIR": str(wandb_home / "data"),
                "ATSO_WARM_WORKERS": "1"})
    cmd = [sys.executable, "-m", "atso_nnunet.cli.run", "--plan", str(plan), "--nnunet-dir", str(nn),
           "--run-dir", str(run), "--num-processes", "1"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]

    trainings = sorted(str(p.relative_to(run / "state").with_suffix(""))
                       for p in (run / "state").rglob("*.done") if "/train/" in str(p))
    assert trainings == ["final/train/final/axial", "g0/train/M0/axial", "g1/train/g1_h1/axial",
                         "g1/train/g1_h2/axial"]
    for step in trainings:
        assert f"job {step.replace('/', '__')}: attempt 1 started (warm worker)" in res.stderr, step
    found = {}
    for folder in run.glob("models/*/nnUNet_results/*/*/fold_all"):
        runs = list((folder / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, f"{folder}: {runs}"
        info = offline_run_info(runs[0])
        found[info["name"]] = info
    assert sorted(found) == trainings
    assert {(i["group"], i["project"]) for i in found.values()} == {("tiny-run", "atso-test")}
