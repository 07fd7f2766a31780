"""The generation schedule: fold swap, initialisation, dependencies, shared G0, batches."""
from __future__ import annotations

import dataclasses
import re
from collections import Counter

import pytest

from atso_nnunet.errors import InputError
from atso_nnunet.methods import get_method
from atso_nnunet.plan import plan_from_dict, reference_subsets
from atso_nnunet.schedule import (
    FuseGroup,
    LabelSet,
    Step,
    build_schedule,
    check_fold_swap,
    order_problems,
    steps_by_id,
    topological_batches,
    trained_cases,
)

LABELED = ["s0", "s1", "s2"]
REFERENCE = [f"r{i}" for i in range(7)]
TEST = ["e0", "e1"]
VIEWS = ["axial", "coronal", "sagittal"]


# The fold-swap mechanics are tested on the full ATSO schedule (every generation's subset models, the
# vote of the subset models on E, one fold swap after the last generation); the defaults (the paper's
# M_t, Algorithm 1's final labels) have their own tests below.
FULL = {"test_model": "ensemble", "final_labels": "last"}


def make(method="atso", subsets=2, generations=2, test=TEST, views=VIEWS, defaults=False, **atso):
    if method == "atso" and not defaults:
        atso = {**FULL, **atso}
    plan = plan_from_dict({
        "name": "schedule test", "sources": ["Dataset980_A"], "dataset_id": 981, "dataset_name": "T",
        "labeled": LABELED, "reference": REFERENCE, "test": list(test), "method": method,
        "generations": 0 if method == "supervised" else generations, "subsets": subsets,
        "views": list(views), "seed": 3, "method_options": {"atso": atso} if atso else {},
    })
    split = reference_subsets(plan)
    return plan, split, build_schedule(plan, split, get_method(plan.method))


def of_kind(steps, kind):
    return [s for s in steps if s.kind == kind]


def pred_models(steps):
    """prediction -> model that made it (from the step that produced it)"""
    return {o: s.model for s in steps if s.kind == "predict" for o in s.outputs}


def pseudo_label_sources(steps, name):
    """{case: set of models whose predictions label it} in pseudo-label set ``name``."""
    fuse = next(s for s in steps if s.kind == "fuse" and s.outputs == (LabelSet(name),))
    models = pred_models(steps)
    out = {}
    for g in fuse.fuse_groups:
        for c in g.cases:
            out[c] = {models[p] for p in g.predictions}
    return out


# --- fold swap ------------------------------------------------------------------------------

@pytest.mark.parametrize("k, mode", [(2, "crossfit"), (2, "disjoint"), (3, "crossfit"), (3, "disjoint"),
                                     (4, "crossfit"), (4, "disjoint")])
def test_atso_never_pseudo_labels_a_case_with_a_model_trained_on_it(k, mode):
    plan, split, steps = make("atso", subsets=k, generations=3, subset_training=mode)
    # K = 2: both modes are the same schedule (model k on R_k, labels the other half)
    assert check_fold_swap(steps, split, "others" if (mode == "crossfit" and k > 2) else "own") == []
    # independent check straight from the training steps
    trained = {}
    for s in of_kind(steps, "train"):
        trained.setdefault(s.model, set()).update(s.train_cases)
    fuses = [s for s in steps if s.kind == "fuse" and s.role == "pseudo_label"]
    assert [f.output.name for f in fuses] == ["R_g0", "R_g1", "R_g2", "R_g3"]
    models = pred_models(steps)
    for f in fuses:
        assert sorted(f.cases) == sorted(REFERENCE)
        for g in f.fuse_groups:
            for p in g.predictions:
                assert not set(g.cases) & trained[models[p]], (f.id, p)


def test_atso_two_subsets_swap_halves():
    plan, split, steps = make("atso", subsets=2, generations=2)
    r1, r2 = split
    assert pseudo_label_sources(steps, "R_g0") == {c: {"M0"} for c in REFERENCE}
    for t in (1, 2):
        src = pseudo_label_sources(steps, f"R_g{t}")
        assert all(src[c] == {f"g{t}_h2"} for c in r1)
        assert all(src[c] == {f"g{t}_h1"} for c in r2)
    by_id = steps_by_id(steps)
    for t in (1, 2):
        for k, part in ((1, r1), (2, r2)):
            s = by_id[f"g{t}/train/g{t}_h{k}/axial"]
            assert s.train_cases == tuple(part) and s.subset == k
            assert s.labels == LabelSet(f"R_g{t - 1}")


@pytest.mark.parametrize("k", [3, 4])
def test_crossfit_model_k_trains_on_the_other_subsets_and_labels_its_own(k):
    plan, split, steps = make("atso", subsets=k, generations=2)  # crossfit is the default
    src = pseudo_label_sources(steps, "R_g1")
    by_id = steps_by_id(steps)
    for j, part in enumerate(split, 1):
        assert all(src[c] == {f"g1_h{j}"} for c in part)
        train = by_id[f"g1/train/g1_h{j}/axial"]
        assert set(train.train_cases) == set(REFERENCE) - set(part)
        assert len(train.train_cases) == len(REFERENCE) - len(part)  # (K-1)/K of R, not 1/K


def test_k2_crossfit_and_disjoint_are_the_same_schedule():
    assert make("atso", subset_training="crossfit")[2] == make("atso", subset_training="disjoint")[2]


def test_atso_three_disjoint_subsets_use_the_ensemble_of_the_other_models():
    plan, split, steps = make("atso", subsets=3, generations=1, subset_training="disjoint")
    src = pseudo_label_sources(steps, "R_g1")
    for j, part in enumerate(split, 1):
        others = {f"g1_h{k}" for k in (1, 2, 3) if k != j}
        assert all(src[c] == others for c in part)
    fuse = steps_by_id(steps)["g1/fuse/R_g1"]
    assert all(len(g.predictions) == 2 * len(VIEWS) for g in fuse.fuse_groups)


def test_synchronous_methods_fail_the_fold_swap_check():
    # the checker is not vacuous: STSO labels the cases it trains on by design
    for method in ("stso", "self"):
        _, split, steps = make(method)
        assert check_fold_swap(steps, split)


def test_check_fold_swap_follows_the_teacher_chain():
    _, split, steps = make("self", generations=2)
    trained = trained_cases(steps)
    assert trained["g2_all"] == set(REFERENCE)
    assert trained["M0"] == set()


def test_reference_predictions_are_made_once_and_reused():
    plan, split, steps = make("atso", subsets=2, generations=2)
    assert order_problems(steps) == []  # no output produced twice
    for t in (1, 2):
        r_preds = [s for s in of_kind(steps, "predict") if s.generation == t and s.output.part == "R"]
        assert len(r_preds) == 2 * len(VIEWS)
        names = {o for s in r_preds for o in s.outputs}
        used = {p for s in of_kind(steps, "fuse") if s.generation == t for g in s.fuse_groups
                for p in g.predictions if p.part == "R"}
        assert used == names


# --- initialisation -------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["atso", "stso"])
def test_atso_and_stso_train_every_model_from_scratch(method):
    _, _, steps = make(method, generations=3)
    for s in of_kind(steps, "train"):
        assert s.init == "scratch" and s.init_from is None, s.id


def test_self_learning_students_start_from_their_teacher():
    _, _, steps = make("self", generations=3)
    by_id = steps_by_id(steps)
    for s in of_kind(steps, "train"):
        if s.model == "M0":
            assert s.init == "scratch"
            continue
        t = s.generation
        teacher = "M0" if t == 1 else f"g{t - 1}_all"
        assert (s.init, s.init_from.name, s.init_from.view) == ("teacher", teacher, s.view), s.id
        teacher_step = f"g{t - 1}/train/{teacher}/{s.view}"
        assert teacher_step in s.inputs and by_id[teacher_step].view == s.view


# --- dependencies ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["atso", "stso", "self", "supervised"])
def test_every_input_is_produced_by_an_earlier_step(method):
    _, _, steps = make(method)
    seen, produced = set(), set()
    for s in steps:
        assert set(s.inputs) <= seen, s.id
        assert set(s.reads) <= produced, s.id
        seen.add(s.id)
        produced.update(s.outputs)
        assert len({o.key for o in s.outputs}) == len(s.outputs)
    assert order_problems(steps) == []
    assert steps[-1].kind == "report" and set(steps[-1].inputs) == {s.id for s in steps[:-1]}


@pytest.mark.parametrize("method", ["atso", "stso", "self", "supervised"])
def test_ids_unique_stable_and_filesystem_safe(method):
    plan, split, steps = make(method)
    ids = [s.id for s in steps]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*", i) for i in ids)
    assert build_schedule(plan, split, get_method(plan.method)) == steps


def test_g0_is_identical_across_methods():
    g0 = {}
    for method in ("atso", "stso", "self", "supervised"):
        _, _, steps = make(method)
        # the same work; only where a figure shows in the report may differ (Table 4 is ATSO's)
        g0[method] = [dataclasses.replace(s, report_cells=()) for s in steps
                      if s.generation == 0 and s.kind != "report"]
    assert g0["atso"] == g0["stso"] == g0["self"] == g0["supervised"]
    kinds = Counter(s.kind for s in g0["atso"])
    assert kinds["train"] == 3 and kinds["predict"] == 6
    assert {s.model for s in g0["atso"] if s.kind == "train"} == {"M0"}
    assert all(s.train_cases == () for s in g0["atso"])


def test_supervised_is_generation_zero_only():
    plan, _, steps = make("supervised")
    assert {s.generation for s in steps} == {0}
    assert get_method("supervised").final_model(plan) == "M0"
    assert "g0/evaluate/M0/E" in steps_by_id(steps)


# --- data sets ------------------------------------------------------------------------------

def test_atso_final_model_trains_on_all_of_r_with_the_last_labels():
    plan, _, steps = make("atso", generations=2)
    finals = [s for s in of_kind(steps, "train") if s.model == "final"]
    assert [s.view for s in finals] == VIEWS
    for s in finals:
        assert s.train_cases == tuple(sorted(REFERENCE)) and s.labels == LabelSet("R_g2")
        assert s.init == "scratch" and s.generation == 3
    ingest = steps_by_id(steps)["final/ingest/R_g2/axial"]
    assert ingest.cases == tuple(sorted(REFERENCE))
    assert get_method("atso").final_model(plan) == "final"
    assert "final/evaluate/final/E" in steps_by_id(steps)


@pytest.mark.parametrize("method", ["stso", "self"])
def test_synchronous_models_train_on_all_of_r(method):
    plan, _, steps = make(method, generations=2)
    for s in of_kind(steps, "train"):
        if s.model != "M0":
            assert s.train_cases == tuple(sorted(REFERENCE))
            assert s.labels == LabelSet(f"R_g{s.generation - 1}")
    assert get_method(method).final_model(plan) == "g2_all"
    assert "g2/evaluate/g2_all/E" in steps_by_id(steps)


@pytest.mark.parametrize("method, k", [("atso", 2), ("atso", 3), ("stso", 2), ("self", 2), ("supervised", 2)])
def test_test_cases_are_never_trained_on_or_pseudo_labelled(method, k):
    _, _, steps = make(method, subsets=k)
    for s in steps:
        assert not set(s.train_cases) & set(TEST), s.id
        if s.kind == "ingest" or (s.kind == "fuse" and s.role == "pseudo_label"):
            assert not set(s.cases) & set(TEST), s.id
        if s.role == "test_eval":
            assert set(s.cases) == set(TEST), s.id


def test_table4_scores_are_scheduled():
    _, _, steps = make("atso", generations=2)
    ids = steps_by_id(steps)
    for j in (1, 2):
        assert f"g0/evaluate/R_g0/R_h{j}" in ids
    for t in (1, 2):
        for k in (1, 2):
            for j in (1, 2):
                assert ids[f"g{t}/evaluate/g{t}_h{k}/R_h{j}"].subset == j
        assert f"g{t}/evaluate/R_g{t}/R" in ids
        ens = ids[f"g{t}/fuse/g{t}_ens/E"]
        assert len(ens.fuse_groups[0].predictions) == 2 * len(VIEWS)


def test_empty_test_set_schedules_no_test_steps():
    _, split, steps = make("atso", test=[])
    assert not [s for s in steps if s.role == "test_eval"]
    assert order_problems(steps) == [] and check_fold_swap(steps, split) == []


# --- batches --------------------------------------------------------------------------------

def test_batches_group_the_six_trainings_of_a_generation():
    _, _, steps = make("atso", subsets=2, generations=2)
    batches = topological_batches(steps)
    assert sum(len(b) for b in batches) == len(steps)
    for t in (1, 2):
        trainings = {s.id for s in of_kind(steps, "train") if s.generation == t}
        assert len(trainings) == 6
        holding = [b for b in batches if trainings & {s.id for s in b}]
        assert len(holding) == 1 and trainings <= {s.id for s in holding[0]}
    # every step runs after all its inputs
    level = {s.id: i for i, b in enumerate(batches) for s in b}
    assert all(level[i] < level[s.id] for s in steps for i in s.inputs)


def test_topological_batches_rejects_cycles_and_unknown_inputs():
    a = Step(id="a", kind="report", generation=0, inputs=("b",))
    b = Step(id="b", kind="report", generation=0, inputs=("a",))
    with pytest.raises(ValueError, match="cycle"):
        topological_batches([a, b])
    with pytest.raises(ValueError, match="unknown input"):
        topological_batches([Step(id="c", kind="report", generation=0, inputs=("zzz",))])


def test_build_schedule_rejects_a_split_that_is_not_a_partition():
    plan, split, _ = make("atso")
    with pytest.raises(InputError, match="reference_split"):
        build_schedule(plan, [split[0]], get_method(plan.method))
    with pytest.raises(InputError, match="reference_split"):
        build_schedule(plan, [split[0] + ["e0"], split[1]], get_method(plan.method))


def test_step_rejects_unsafe_ids_and_bad_init():
    with pytest.raises(ValueError):
        Step(id="../x", kind="report", generation=0)
    with pytest.raises(ValueError):
        Step(id="x", kind="predict", generation=0, init="scratch")
    with pytest.raises(ValueError):
        Step(id="x", kind="train", generation=1, init="teacher")
    with pytest.raises(ValueError):
        Step(id="x", kind="monitor", generation=1)
    assert FuseGroup(("a",), ()).cases == ("a",)


# --- faithful ATSO options ------------------------------------------------------------------

def test_default_atso_is_like_for_like_combined_m_t_on_round_t_and_the_final_model_is_m_T():
    plan, split, steps = make("atso", generations=3, defaults=True)
    by_id = steps_by_id(steps)
    trained = {s.model for s in of_kind(steps, "train")}
    # subset models only where their labels are used: generations 1 and 2 make R_g1 and R_g2
    assert {"g1_h1", "g1_h2", "g2_h1", "g2_h2"} <= trained and not {"g3_h1", "g3_h2"} & trained
    assert {"g1_comb", "g2_comb", "final"} <= trained and "g3_comb" not in trained  # at T it is the final model
    for t in (1, 2):
        for v in VIEWS:
            s = by_id[f"g{t}/train/g{t}_comb/{v}"]
            # M_t learns from the labels of round t, the ones generation t's subset models train on
            assert s.train_cases == tuple(sorted(REFERENCE)) and s.labels == LabelSet(f"R_g{t - 1}")
            assert by_id[f"g{t}/train/g{t}_h1/{v}"].labels == s.labels
            assert s.init == "scratch" and s.training_role == "combined"
        ev = by_id[f"g{t}/evaluate/g{t}_comb/E"]
        assert [(c.generation, c.column) for c in ev.report_cells] == [(t, "test")]
    assert {s.labels for s in of_kind(steps, "train") if s.model == "final"} == {LabelSet("R_g2")}
    final_ev = by_id["final/evaluate/final/E"]
    assert [(c.generation, c.column) for c in final_ev.report_cells] == [(3, "test"), (4, "final")]
    # no ensemble vote, and the subset models predict R only
    assert not [s for s in steps if "ens" in s.id]
    assert not [s for s in of_kind(steps, "predict") if s.model.startswith("g1_h") and s.output.part == "E"]
    assert check_fold_swap(steps, split) == [] and order_problems(steps) == []
    # one ingest per label set: R_g1 is ingested once for generation 2's subset and combined models
    assert "g2/ingest/R_g1/axial" in by_id and "g1/ingest/R_g1/axial" not in by_id
    # cost: M0, 2 generations x 2 subset models, M_1, M_2 and the final model, per view
    assert len(of_kind(steps, "train")) == 3 * (1 + 4 + 3)


def test_final_label_rounds_match_across_methods_by_default():
    """Like-for-like: after T generations every semi-supervised final model learned from round T."""
    from atso_nnunet.methods import get_method

    for method in ("atso", "stso", "self"):
        plan, _, _ = make(method, generations=3, defaults=True)
        assert get_method(method).final_label_round(plan) == 3
    plan, _, _ = make("atso", generations=3)            # FULL: one fold swap more
    assert get_method("atso").final_label_round(plan) == 4
    assert get_method("oracle").final_label_round(make("oracle", generations=1)[0]) == 0
    assert get_method("supervised").final_label_round(make("supervised")[0]) == 0


def test_combined_with_last_labels_trains_m_t_every_generation_and_a_final_model_after():
    _, _, steps = make("atso", generations=2, test_model="combined", final_labels="last")
    by_id = steps_by_id(steps)
    assert by_id["g2/train/g2_comb/axial"].labels == LabelSet("R_g1")
    assert {s.labels for s in of_kind(steps, "train") if s.model == "final"} == {LabelSet("R_g2")}
    assert [(c.generation, c.column) for c in by_id["final/evaluate/final/E"].report_cells] == [(3, "final")]


def test_ensemble_keeps_todays_step_ids():
    _, _, steps = make("atso", generations=2)
    ids = {s.id for s in steps}
    assert {"g1/fuse/g1_ens/E", "g2/evaluate/g2_ens/E", "g2/ingest/R_g1/axial", "final/ingest/R_g2/axial"} <= ids


@pytest.mark.parametrize("final_labels, expected", [("last", "R_g3"), ("previous", "R_g2")])
def test_final_model_label_set(final_labels, expected):
    _, _, steps = make("atso", generations=3, final_labels=final_labels)
    finals = [s for s in of_kind(steps, "train") if s.model == "final"]
    assert {s.labels for s in finals} == {LabelSet(expected)}


def test_even_votes_keep_probabilities_and_odd_votes_do_not():
    _, _, steps = make("atso", generations=1)  # 2 subset models x 3 views on E = 6 voters
    by_id = steps_by_id(steps)
    assert by_id["g1/predict/g1_h1/axial/E"].save_probabilities  # read by the 6-voter ensemble
    assert not by_id["g1/predict/g1_h1/axial/R"].save_probabilities  # R_j: 3 views of one model
    assert not by_id["g0/predict/M0/axial/E"].save_probabilities
    _, _, two_views = make("stso", generations=1, views=["axial", "sagittal"])
    assert all(s.save_probabilities for s in of_kind(two_views, "predict"))


def test_mean_fusion_keeps_every_probability():
    plan = plan_from_dict({"name": "m", "sources": ["Dataset980_A"], "dataset_id": 981, "dataset_name": "T",
                           "labeled": LABELED, "reference": REFERENCE, "test": TEST, "method": "stso",
                           "generations": 1, "fusion": "mean"})
    steps = build_schedule(plan, reference_subsets(plan), get_method(plan.method))
    assert all(s.save_probabilities for s in of_kind(steps, "predict"))
    assert {s.fusion for s in of_kind(steps, "fuse")} == {"mean"}


def test_three_voters_of_three_classes_keep_probabilities_for_their_ties():
    """Issue 29: with 3 voters and 3 classes a three-way tie is possible; it is broken by probability."""
    plan, split, binary = make("stso", generations=1)
    multi = build_schedule(plan, split, get_method(plan.method), n_classes=3)
    assert not any(s.save_probabilities for s in of_kind(binary, "predict"))
    assert all(s.save_probabilities for s in of_kind(multi, "predict"))
    single = make("stso", generations=1, views=["axial"])
    one_view = build_schedule(single[0], single[1], get_method("stso"), n_classes=3)
    assert not any(s.save_probabilities for s in of_kind(one_view, "predict"))   # nothing to fuse


def test_the_task_classes_come_from_the_sources_or_the_generator(tmp_path):
    import json

    from atso_nnunet.paths import NnUNetPaths
    from atso_nnunet.run.prepare import task_classes

    paths = NnUNetPaths(tmp_path / "raw", tmp_path / "pre", tmp_path / "res")
    base = {"name": "c", "dataset_id": 981, "dataset_name": "T", "labeled": LABELED, "reference": REFERENCE,
            "test": TEST, "method": "stso", "generations": 1}
    assert task_classes(plan_from_dict({**base, "sources": ["Dataset980_A"]}), paths) is None
    (tmp_path / "raw" / "Dataset980_A").mkdir(parents=True)
    (tmp_path / "raw" / "Dataset980_A" / "dataset.json").write_text(json.dumps(
        {"labels": {"background": 0, "organ": 1, "lesion": 2}}))
    assert task_classes(plan_from_dict({**base, "sources": ["Dataset980_A"]}), paths) == 3
    synth = {**base, "sources": ["Dataset970_B"], "synthetic": {"Dataset970_B": {"domain": "B", "n_cases": 40}}}
    assert task_classes(plan_from_dict(synth), paths) == 3
    synth["synthetic"]["Dataset970_B"]["domain"] = "A"
    assert task_classes(plan_from_dict(synth), paths) == 2
