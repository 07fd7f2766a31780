"""The method layer: registry, per-method plan checks, schedules, and adding a method in one file."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from atso_nnunet.errors import InputError
from atso_nnunet.plan import plan_from_dict, reference_subsets
from atso_nnunet.methods import get_method, method_names, method_problems
from atso_nnunet.methods.base import SEMI_TRAINER, SUPERVISED_TRAINER, Method, register
from atso_nnunet.schedule import build_schedule, check_fold_swap, order_problems

BASE = {"name": "m", "sources": ["Dataset980_A"], "dataset_id": 981, "dataset_name": "M",
        "labeled": ["s0", "s1"], "reference": [f"r{i}" for i in range(6)], "test": ["e0"],
        "views": ["axial", "coronal"]}


def _plan(method, generations=2, **over):
    return plan_from_dict({**BASE, "method": method, "generations": generations, **over})


def test_registry_lists_the_paper_methods_in_order():
    assert method_names()[:4] == ("atso", "stso", "self", "supervised")
    with pytest.raises(InputError, match="choose from atso, stso"):
        get_method("mean-teacher")


@pytest.mark.parametrize("method, values, expect", [
    ("atso", {"generations": 0}, "at least 1 generation"),
    ("atso", {"subsets": 1, "generations": 1}, "at least 2 reference subsets"),
    ("stso", {"generations": 1, "reference": []}, "needs reference"),
    ("supervised", {"generations": 2}, "trains M0 only"),
    ("nope", {}, "unknown method 'nope'"),
])
def test_method_checks_name_the_field(method, values, expect):
    problems = method_problems({"method": method, "reference": ["r0", "r1"], **values})
    assert any(expect in p for p in problems), problems


@pytest.mark.parametrize("name, final", [("atso", "final"), ("stso", "g2_all"), ("self", "g2_all"),
                                         ("supervised", "M0")])
def test_final_model_and_trainers(name, final):
    method = get_method(name)
    plan = _plan(name, generations=0 if name == "supervised" else 2)
    assert method.final_model(plan) == final
    steps = build_schedule(plan, reference_subsets(plan), method)
    assert order_problems(steps) == []
    trainers = {s.model: s.output.trainer for s in steps if s.kind == "train"}
    assert trainers.pop("M0") == SUPERVISED_TRAINER
    assert set(trainers.values()) <= {SEMI_TRAINER}
    assert any(s.kind == "train" and s.model == final for s in steps)


def test_training_roles_per_method():
    roles = {}
    for name in ("atso", "stso", "self"):
        plan = _plan(name)
        steps = build_schedule(plan, reference_subsets(plan), get_method(plan.method))
        roles[name] = {(s.model, s.training_role) for s in steps if s.kind == "train"}
    assert ("M0", "M0") in roles["atso"] and ("final", "final") in roles["atso"]
    assert ("g1_h1", "student") in roles["atso"]
    assert ("g2_all", "student") in roles["stso"] and ("g2_all", "self") in roles["self"]


@pytest.mark.parametrize("name", ["supervised", "stso", "self", "atso"])
def test_the_report_names_the_plans_fusion(name):
    # r1's reports said "tri-view majority vote" of runs whose plan fused by mean probability.
    gens = 0 if name == "supervised" else 2
    tri = ["axial", "coronal", "sagittal"]
    mean = get_method(name).describe(_plan(name, generations=gens, views=tri, fusion="mean"))
    vote = get_method(name).describe(_plan(name, generations=gens, views=tri))
    assert "tri-view mean probability" in mean and "majority vote" not in mean
    assert "tri-view majority vote" in vote and "mean probability" not in vote


@pytest.mark.parametrize("views, words", [(["axial"], "axial view only"),
                                          (["axial", "coronal", "sagittal"], "tri-view majority vote"),
                                          (["axial", "sagittal"], "majority vote of the axial and sagittal views")])
def test_the_report_names_the_views_a_model_is_scored_with(views, words):
    for name in ("supervised", "stso", "self"):
        text = get_method(name).describe(_plan(name, generations=0 if name == "supervised" else 2, views=views))
        assert words in text and "{views}" not in text
        if len(views) != 3:
            assert "tri-view" not in text


def test_only_atso_passes_the_fold_swap_check():
    for name in ("atso", "stso", "self"):
        plan = _plan(name)
        split = reference_subsets(plan)
        assert (check_fold_swap(build_schedule(plan, split, get_method(plan.method)), split) == []) == (name == "atso")


def test_label_free_monitors_are_steps_with_report_cells():
    plan = _plan("atso", generations=2)  # by default generation 2 trains only M_2 (= the final model)
    steps = build_schedule(plan, reference_subsets(plan), get_method(plan.method))
    monitors = {s.id: s for s in steps if s.kind == "monitor"}
    assert set(monitors) == {"g0/monitor/empty_R_g0", "g1/monitor/empty_R_g1", "g1/monitor/change_R_g1",
                             "g1/monitor/agreement_g1_R1", "g1/monitor/agreement_g1_R2",
                             "g0/monitor/volume_R_g0", "g1/monitor/volume_R_g1"}
    change = monitors["g1/monitor/change_R_g1"]
    assert [r.name for r in change.reads] == ["R_g1", "R_g0"]
    assert [c.column for c in change.report_cells] == ["change"]


def test_a_method_added_in_one_file_reaches_the_cli_the_schedule_and_the_report(tmp_path):
    """What a contributor does: drop one module into atso_nnunet/methods/ (here in a copy of the
    package on sys.path) and nothing else."""
    import atso_nnunet
    import shutil
    from pathlib import Path

    pkg = tmp_path / "atso_nnunet"
    shutil.copytree(Path(atso_nnunet.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "methods" / "twice.py").write_text(textwrap.dedent('''
        from atso_nnunet.methods.base import Method, register
        from atso_nnunet.schedule.vocabulary import pseudo_label_set
        from atso_nnunet.schedule.step import ReportCell

        @register
        class Twice(Method):
            name = "twice"
            summary = "one student on S + R, trained twice as long"
            how_evaluated = "the student, tri-view vote"

            def add_generations(self, b):
                for v in b.views:
                    b.ingest("g1", 1, pseudo_label_set(0), v, b.R)
                for v in b.views:
                    b.train("g1", 1, "twice", v, role="student", train_cases=b.R, labels=pseudo_label_set(0))
                b.predict_all_views("g1", 1, "twice", parts="E")
                b.score_on_test("g1", 1, "twice", cells=[ReportCell(1, "test")])

            def final_model(self, plan):
                return "twice"
    '''))
    code = textwrap.dedent('''
        import json
        from atso_nnunet.cli.run import build_parser
        from atso_nnunet.methods import get_method
        from atso_nnunet.plan import plan_from_dict, reference_subsets
        from atso_nnunet.schedule import build_schedule
        help_text = build_parser().format_help()
        plan = plan_from_dict(%r)
        steps = build_schedule(plan, reference_subsets(plan), get_method(plan.method))
        print(json.dumps({"help": "twice" in help_text,
                          "ids": [s.id for s in steps if s.generation == 1],
                          "cells": [c.column for s in steps for c in s.report_cells if s.generation == 1]}))
    ''' % {**BASE, "method": "twice", "generations": 1})
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    import json

    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["help"]
    assert "g1/train/twice/axial" in res["ids"] and "g1/evaluate/twice/E" in res["ids"]
    assert res["cells"] == ["test"]


def test_register_refuses_two_methods_with_one_name():
    with pytest.raises(ValueError, match="registered twice"):
        @register
        class Again(Method):  # noqa: F841
            name = "atso"
            summary = how_evaluated = ""

            def add_generations(self, b):
                pass

            def final_model(self, plan):
                return "x"
