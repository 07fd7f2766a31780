"""atso_nnunet.plan.catalog: the packaged plans, found from any working directory."""
from __future__ import annotations

import json

import pytest

from atso_nnunet.errors import InputError
from atso_nnunet.plan import available_plans, find_plan, load_plan, plans_root
from plan_fixtures import plan_data, write_plan_file


def test_find_plan_from_another_working_directory(tmp_path, monkeypatch):
    root = tmp_path / "plans"
    write_plan_file(root / "mydata" / "10pct.json", plan_data())
    write_plan_file(root / "mydata" / "20pct.json", plan_data())
    monkeypatch.chdir(tmp_path / "plans" / "mydata")
    assert find_plan("mydata", "10pct", root=root) == root / "mydata" / "10pct.json"
    assert find_plan("mydata", "20pct.json", root=root).name == "20pct.json"
    with pytest.raises(InputError, match="available splits of mydata: 10pct, 20pct"):
        find_plan("mydata", "30pct", root=root)
    with pytest.raises(InputError, match="mydata: 10pct, 20pct"):
        find_plan("nothere", "10pct", root=root)


def test_packaged_plans_folder_is_importable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = plans_root()
    assert root.is_dir() and (root / "__init__.py").is_file()


def test_every_packaged_plan_loads_and_uses_the_training_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plans = available_plans()
    assert {"synthetic", "NIH", "transfer"} <= set(plans)
    for dataset, splits in plans.items():
        for split in splits:
            path = find_plan(dataset, split)
            assert "schedule" not in json.loads(path.read_text()), path
            load_plan(path)
