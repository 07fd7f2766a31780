"""The comparison's bookkeeping on tiny runs with a fake nnU-Net: seeds, shared M0, the oracle's
refusal without ground truth, deferred test scores, and tables equal to the run folders' scores."""
from __future__ import annotations

import json
import shutil

import pytest

from atso_nnunet.run import driver
from atso_nnunet.comparison.run import ComparisonOptions, run_comparison
from atso_nnunet.comparison.seeds import labeled_draw, labeled_pool, plan_for_seed
from atso_nnunet.errors import InputError
from atso_nnunet.io import read_json
from atso_nnunet.plan import plan_from_dict

from helpers import write_tiny_dataset
from fake_nnunet import FakeNnUNetExecutor

POOL = [f"tiny_{i:03d}" for i in range(7)]


def _plan(**over):
    data = {"name": "cmp", "sources": ["Dataset990_Tiny"], "dataset_id": 991, "dataset_name": "Cmp",
            "labeled": POOL[:3], "reference": POOL[3:], "test": ["tiny_007", "tiny_008"], "method": "atso",
            "generations": 1, "views": ["axial"]}
    data.update(over)
    return plan_from_dict(data)


def _final_of(run_dir):
    """A finished run's own final score: its final model's, else its last generation's."""
    rep = json.loads((run_dir / "report.json").read_text())
    final = rep["final"]["test_dsc_mean"]
    return final if final is not None else rep["generations"][-1]["test_dsc"]


def _options(tmp_path, nnunet_paths, executor, **kw):
    return ComparisonOptions(out_dir=tmp_path / "cmp", paths=nnunet_paths, executor=executor, **kw)


def test_seeds_draw_different_labeled_sets_and_keep_the_test_set():
    plan = _plan()
    draws = {s: plan_for_seed(plan, s, "atso") for s in (0, 1, 2)}
    assert len({p.labeled for p in draws.values()}) == 3
    for s, p in draws.items():
        assert set(p.labeled) | set(p.reference) == set(POOL) and p.test == plan.test
        assert p.training.seed == s and p.seed == s and p.dataset_id == 991 + s
        assert list(p.labeled) == labeled_draw(POOL, 3, s)
    assert plan_for_seed(plan, 0, "supervised").generations == 0
    assert plan_for_seed(plan, 0, "oracle").generations == 1


def _two_sources(raw):
    """Domain A (Dataset990_Tiny: tiny_000-002 labeled, tiny_003-004 reference with labels) and
    domain B (Dataset989_TinyB: tinyb_000-003 reference with labels, tinyb_004-005 test)."""
    write_tiny_dataset(raw, dataset_id=990, name="Tiny", n_labeled=3, n_reference=2, n_test=0)
    write_tiny_dataset(raw, dataset_id=989, name="TinyB", n_labeled=0, n_reference=4, n_test=2, seed=1,
                       prefix="tinyb")
    return [raw / "Dataset990_Tiny", raw / "Dataset989_TinyB"]


def _transfer_plan(reference):
    return _plan(sources=["Dataset990_Tiny", "Dataset989_TinyB"], labeled=["tiny_000", "tiny_001", "tiny_002"],
                 reference=reference, test=["tinyb_004", "tinyb_005"])


def test_labeled_pool_stays_in_the_labeled_sources_and_needs_ground_truth(nnunet_paths):
    from atso_nnunet.data.materialize import find_cases

    sources = _two_sources(nnunet_paths.raw)
    a_labeled = ["tiny_000", "tiny_001", "tiny_002"]
    b_ref = ["tinyb_000", "tinyb_001", "tinyb_002", "tinyb_003"]
    # transfer (S from A, R from B): S is the whole pool, whatever the seed
    plan = _transfer_plan(b_ref)
    pool = labeled_pool(plan, find_cases(sources, [*plan.labeled, *plan.reference]))
    assert pool == a_labeled
    assert {plan_for_seed(plan, s, "atso", pool=pool).labeled for s in (0, 1, 2)} == {tuple(a_labeled)}
    assert set(plan_for_seed(plan, 1, "atso", pool=pool).reference) == set(b_ref)
    # R from both domains: only the A reference cases can become labeled
    plan = _transfer_plan(["tiny_003", "tiny_004", "tinyb_000", "tinyb_001"])
    pool = labeled_pool(plan, find_cases(sources, [*plan.labeled, *plan.reference]))
    assert pool == [*a_labeled, "tiny_003", "tiny_004"]
    for s in (0, 1, 2):
        p = plan_for_seed(plan, s, "atso", pool=pool)
        assert all(c.startswith("tiny_") for c in p.labeled)
        assert set(p.labeled) | set(p.reference) == set(plan.labeled) | set(plan.reference)
    # a reference case without ground truth never becomes labeled
    (sources[0] / "labelsRef" / "tiny_003.nii.gz").unlink()
    pool = labeled_pool(plan, find_cases(sources, [*plan.labeled, *plan.reference]))
    assert pool == [*a_labeled, "tiny_004"]
    with pytest.raises(InputError, match="outside the plan"):
        plan_for_seed(plan, 0, "atso", pool=[*a_labeled, "tinyb_005"])


def test_a_transfer_comparison_keeps_its_labeled_domain_for_every_seed(tmp_path, nnunet_paths, fake_prepare):
    """S from domain A, R and E from domain B: every seed's runs train on the A cases only (the
    redraw from S + R once put B cases into S and the comparison stopped before its first run)."""
    _two_sources(nnunet_paths.raw)
    plan = _transfer_plan(["tinyb_000", "tinyb_001", "tinyb_002", "tinyb_003"])
    ex = FakeNnUNetExecutor()
    records = run_comparison(plan, _options(tmp_path, nnunet_paths, ex, seeds=[0, 1], methods=["supervised", "stso"]))
    assert {(r.seed, r.method) for r in records} == {(s, m) for s in (0, 1) for m in ("supervised", "stso")}
    for r in records:
        used = read_json(r.run_dir / "plan.json")
        assert used["labeled"] == ["tiny_000", "tiny_001", "tiny_002"] == r.labeled
        assert sorted(used["reference"]) == ["tinyb_000", "tinyb_001", "tinyb_002", "tinyb_003"]
    # seeds still differ: their own training seed and reference split
    splits = {r.seed: read_json(r.run_dir / "plan.json")["training"]["seed"] for r in records}
    assert splits == {0: 0, 1: 1}
    assert "the labeled set is the same for every seed" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_comparison_shares_m0_within_a_seed_and_tables_match_the_runs(tmp_path, nnunet_paths, fake_prepare):
    write_tiny_dataset(nnunet_paths.raw, dataset_id=990, name="Tiny", n_labeled=3, n_reference=4, n_test=2)
    ex = FakeNnUNetExecutor()
    records = run_comparison(_plan(), _options(tmp_path, nnunet_paths, ex, seeds=[0, 1],
                                               methods=["supervised", "stso", "atso", "oracle"]))
    assert {(r.seed, r.method) for r in records} == {(s, m) for s in (0, 1)
                                                     for m in ("supervised", "stso", "atso", "oracle")}
    # M0 trained once per seed (by the labeled-only run), never across seeds
    m0 = [n for n in ex.ran if n.startswith("g0__train__M0")]
    assert len(m0) == 2
    for s in (0, 1):
        shared = tmp_path / "cmp" / f"seed{s}" / "supervised"
        for m in ("stso", "atso", "oracle"):
            run = tmp_path / "cmp" / f"seed{s}" / m
            marker = read_json(run / "state" / "g0" / "train" / "M0" / "axial.done")
            assert marker["shared_from"] == str(shared)
            assert (run / "models" / "M0").resolve() == (shared / "models" / "M0").resolve()
    # the table's numbers are the run folders' own scores
    summary = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    for r in records:
        assert summary["final"]["per_seed"][r.method][str(r.seed)] == pytest.approx(_final_of(r.run_dir))
    d = summary["paired_differences"]["atso-stso"]
    assert d["per_seed"][0] == pytest.approx(summary["final"]["per_seed"]["atso"]["0"]
                                             - summary["final"]["per_seed"]["stso"]["0"])
    assert (tmp_path / "cmp" / "comparison.md").is_file() and (tmp_path / "cmp" / "comparison.png").is_file()
    assert "each seed is its own labeled draw" in (tmp_path / "cmp" / "comparison.md").read_text()
    # no score on E before a run's trainings and pseudo-labels were done: in each run the test
    # scores come after every other scoring of R
    for run in (f"seed{s}/{m}" for s in (0, 1) for m in ("supervised", "stso", "atso", "oracle")):
        roles = [e[1] for e in fake_prepare if e[0] == "score" and e[2] == run]
        if "test_eval" in roles:
            first_test = roles.index("test_eval")
            assert all(r == "test_eval" for r in roles[first_test:]), (run, roles)
    # a rerun does nothing
    ex2 = FakeNnUNetExecutor()
    run_comparison(_plan(), _options(tmp_path, nnunet_paths, ex2, seeds=[0, 1],
                                     methods=["supervised", "stso", "atso", "oracle"]))
    assert ex2.ran == []


def test_changed_plan_does_not_reuse_m0(tmp_path, nnunet_paths, fake_prepare):
    write_tiny_dataset(nnunet_paths.raw, dataset_id=990, name="Tiny", n_labeled=3, n_reference=4, n_test=2)
    from atso_nnunet.comparison.seeds import generation_zero_key

    a, b = plan_for_seed(_plan(), 0, "stso"), plan_for_seed(_plan(training={"num_epochs": 5}), 0, "stso")
    assert generation_zero_key(a) != generation_zero_key(b)
    assert generation_zero_key(a) == generation_zero_key(plan_for_seed(_plan(), 0, "atso"))
    assert generation_zero_key(a) != generation_zero_key(plan_for_seed(_plan(), 1, "stso"))


def test_oracle_is_refused_without_reference_ground_truth(tmp_path, nnunet_paths, fake_prepare):
    ds = write_tiny_dataset(nnunet_paths.raw, dataset_id=990, name="Tiny", n_labeled=3, n_reference=4, n_test=2)
    shutil.rmtree(ds / "labelsRef")
    ex = FakeNnUNetExecutor()
    opts = driver.DriverOptions(run_dir=tmp_path / "run", paths=nnunet_paths, executor=ex)
    with pytest.raises(InputError, match="method 'oracle' trains on the reference set's true labels"):
        driver.run_experiment(_plan(method="oracle"), opts)
    assert ex.ran == []  # refused before any training


def test_without_reference_labels_every_seed_keeps_the_plans_labeled_set(tmp_path, nnunet_paths, fake_prepare,
                                                                          caplog):
    """R without ground truth (a hospital's unlabeled scans): no unlabeled case may become labeled,
    so S stays the plan's for every seed, and the log says the seeds differ only in split and seed."""
    ds = write_tiny_dataset(nnunet_paths.raw, dataset_id=990, name="Tiny", n_labeled=3, n_reference=4, n_test=2)
    shutil.rmtree(ds / "labelsRef")
    with caplog.at_level("WARNING", logger="atso_nnunet.comparison.run"):
        records = run_comparison(_plan(), _options(tmp_path, nnunet_paths, FakeNnUNetExecutor(), seeds=[1, 2],
                                                   methods=["supervised"]))
    assert [r.labeled for r in records] == [POOL[:3], POOL[:3]]
    assert "labeled set is the same for every seed" in caplog.text


def test_one_seed_has_no_spread():
    """A single seed has no sample standard deviation: the table must not print '± 0.0'."""
    from atso_nnunet.comparison import report as cr
    from atso_nnunet.comparison.summary import _mean_sd

    assert _mean_sd([0.437]) == (0.437, None, 1)
    assert cr._pct(0.437, _mean_sd([0.437])[1]) == "43.7"
    mean, sd, n = _mean_sd([0.4, 0.5])
    assert n == 2 and abs(sd - 0.0707) < 1e-3


def test_report_only_reads_every_run_folder_and_runs_nothing(tmp_path, nnunet_paths, fake_prepare):
    write_tiny_dataset(nnunet_paths.raw, dataset_id=990, name="Tiny", n_labeled=3, n_reference=4, n_test=2)
    # two invocations, one per seed (as two processes beside each other would run them)
    for seed in (0, 1):
        run_comparison(_plan(), _options(tmp_path, nnunet_paths, FakeNnUNetExecutor(), seeds=[seed],
                                         methods=["supervised", "stso"]))
    # each invocation's tables cover the seeds it was asked for
    assert set(json.loads((tmp_path / "cmp" / "comparison.json").read_text())["final"]["per_seed"]["stso"]) == {"1"}
    records = run_comparison(_plan(), _options(tmp_path, nnunet_paths, None, seeds=[0, 1],
                                               methods=["supervised", "stso", "atso"], report_only=True))
    assert {(r.seed, r.method) for r in records} == {(s, m) for s in (0, 1) for m in ("supervised", "stso")}
    summary = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    for r in records:
        assert summary["final"]["per_seed"][r.method][str(r.seed)] == pytest.approx(_final_of(r.run_dir))
    assert not (tmp_path / "cmp" / "seed0" / "atso").exists()
    with pytest.raises(InputError, match="--report-only: no run folder"):
        run_comparison(_plan(), _options(tmp_path, nnunet_paths, None, seeds=[5], report_only=True))


def test_an_unfinished_run_has_no_final_score(tmp_path):
    from atso_nnunet.comparison.run import RunRecord
    from atso_nnunet.comparison.report import render_markdown
    from atso_nnunet.comparison.summary import summarise

    m0 = {"metric": "mean", "final": {}, "generations": [{"generation": 0, "test_dsc": 0.44}]}
    records = [RunRecord(0, "supervised", tmp_path / "a", m0),
               RunRecord(0, "stso", tmp_path / "b", {**m0, "generations": m0["generations"] + [
                   {"generation": 1, "test_dsc": None}]}, finished=False)]
    summary = summarise(records)
    assert summary["final"]["per_seed"]["supervised"][0] == pytest.approx(0.44)
    assert summary["final"]["per_seed"]["stso"][0] is None  # not the shared M0's 0.44
    assert "Not finished yet** (no final score, '–'; rerun the command to continue): seed 0 STSO" in \
        render_markdown(summary, "p")


def test_the_comparison_says_which_trainings_were_resumed(tmp_path):
    """Issue 29: a run's resumed trainings (report.json) are named in the comparison."""
    from atso_nnunet.comparison.run import RunRecord
    from atso_nnunet.comparison.report import render_markdown
    from atso_nnunet.comparison.summary import summarise

    m0 = {"metric": "mean", "final": {}, "generations": [{"generation": 0, "test_dsc": 0.44}],
          "resumed_trainings": [{"step": "g0/train/M0/axial", "epochs": [3], "exact": True}]}
    summary = summarise([RunRecord(2, "supervised", tmp_path / "a", m0),
                         RunRecord(2, "stso", tmp_path / "b", {**m0, "resumed_trainings": []})])
    assert [r["resumed_trainings"] for r in summary["runs"]] == [m0["resumed_trainings"], []]
    assert "Resumed trainings (continued with `nnUNetv2_train --c` after an interruption; seeded per epoch, they " \
           "equal uninterrupted ones): seed 2 labeled-only g0/train/M0/axial." in render_markdown(summary, "p")


def test_a_curve_averages_the_same_seeds_at_every_generation(tmp_path):
    """Seed 1's STSO is still training: its G0 (the shared M0, 0.30) must not enter STSO's G0 mean
    while seed 1 is absent from G1, or the step G0 -> G1 would show seed 1's weak M0, not STSO."""
    from atso_nnunet.comparison.run import RunRecord
    from atso_nnunet.comparison.report import plot, render_markdown
    from atso_nnunet.comparison.summary import summarise

    def rep(*tests, final=None):
        return {"metric": "mean", "final": {"test_dsc_mean": final} if final else {},
                "generations": [{"generation": t, "test_dsc": v} for t, v in enumerate(tests)]}

    records = [RunRecord(0, "supervised", tmp_path / "a", rep(0.50)),
               RunRecord(1, "supervised", tmp_path / "b", rep(0.30)),
               RunRecord(0, "stso", tmp_path / "c", rep(0.50, 0.55, final=0.56)),
               RunRecord(1, "stso", tmp_path / "d", rep(0.30, None), finished=False)]
    summary = summarise(records)
    g = summary["per_generation"]["stso"]
    assert (g[0]["test"]["mean"], g[0]["test"]["n"]) == (pytest.approx(0.50), 1)
    assert (g[1]["test"]["mean"], g[1]["test"]["n"]) == (pytest.approx(0.55), 1)
    assert g[0]["test"]["per_seed"] == [0.50, 0.30]  # kept per seed (CSV) though left out of the mean
    assert summary["per_generation"]["supervised"][0]["test"]["n"] == 2
    md = render_markdown(summary, "p")
    assert "| STSO | 1 | 50.0 | 55.0 |" in md and "| labeled-only | 2 | 40.0 ± 14.1 |  |" in md
    assert plot(summary, tmp_path / "c.png", "p").stat().st_size > 0


def test_a_run_driven_by_another_process_is_skipped_not_fatal(tmp_path, nnunet_paths, fake_prepare, caplog):
    """Parallel invocations on one --out: a locked run is skipped; a locked labeled-only run skips
    its seed (the seed's methods must share its M0, not train their own)."""
    from atso_nnunet.run.rundir import RunLock

    write_tiny_dataset(nnunet_paths.raw, dataset_id=990, name="Tiny", n_labeled=3, n_reference=4, n_test=2)
    out = tmp_path / "cmp"
    ex = FakeNnUNetExecutor()
    with RunLock(out / "seed0" / "stso"), RunLock(out / "seed1" / "supervised"):
        records = run_comparison(_plan(), _options(tmp_path, nnunet_paths, ex, seeds=[0, 1],
                                                   methods=["supervised", "stso", "atso"]))
    assert {(r.seed, r.method) for r in records} == {(0, "supervised"), (0, "atso")}
    assert not (out / "seed0" / "stso" / "report.json").exists()
    assert not (out / "seed1" / "atso").exists() and not (out / "seed1" / "stso").exists()
    assert [n for n in ex.ran if n.startswith("g0__train__M0")] == ["g0__train__M0__axial"]
    assert "seed 1 skipped" in caplog.text and "seed 0, stso skipped" in caplog.text
    # once the other process is gone, the same command does the rest, sharing each seed's M0
    ex2 = FakeNnUNetExecutor()
    records = run_comparison(_plan(), _options(tmp_path, nnunet_paths, ex2, seeds=[0, 1],
                                               methods=["supervised", "stso", "atso"]))
    assert {(r.seed, r.method) for r in records} == {(s, m) for s in (0, 1) for m in ("supervised", "stso", "atso")}
    assert [n for n in ex2.ran if n.startswith("g0__train__M0")] == ["g0__train__M0__axial"]  # seed 1's only
    marker = read_json(out / "seed0" / "stso" / "state" / "g0" / "train" / "M0" / "axial.done")
    assert marker["shared_from"] == str(out / "seed0" / "supervised")


def test_a_taken_dataset_id_of_any_seed_is_refused_before_the_first_run(tmp_path, nnunet_paths, fake_prepare):
    """Seed 2 would build Dataset993_*, which another experiment holds: refused before seed 0 starts."""
    write_tiny_dataset(nnunet_paths.raw, dataset_id=990, name="Tiny", n_labeled=3, n_reference=4, n_test=2)
    (nnunet_paths.raw / "Dataset993_SomeoneElse").mkdir()
    with pytest.raises(InputError, match=r"seed 2: dataset_id 993: nnUNet_raw .* Dataset993_SomeoneElse"):
        run_comparison(_plan(), _options(tmp_path, nnunet_paths, FakeNnUNetExecutor(), seeds=[0, 1, 2],
                                         methods=["supervised"]))
    assert not (tmp_path / "cmp").exists() and not list(nnunet_paths.raw.glob("Dataset991_*"))


def test_a_run_on_another_training_of_m0_is_left_out_of_the_pairs(tmp_path):
    """Seed 1's STSO ran on a retrained M0 (its folder was lost; training is not bit-deterministic):
    its difference to seed 1's labeled-only or ATSO would carry M0's run-to-run spread, so it is
    left out of every pair, named in the tables, and still counted in STSO's own mean."""
    from atso_nnunet.comparison.run import RunRecord
    from atso_nnunet.comparison.report import render_markdown
    from atso_nnunet.comparison.summary import summarise

    def rep(*tests, final):
        return {"metric": "mean", "final": {"test_dsc_mean": final},
                "generations": [{"generation": t, "test_dsc": v} for t, v in enumerate(tests)]}

    records = [RunRecord(0, "supervised", tmp_path / "a", rep(0.40, final=None)),
               RunRecord(1, "supervised", tmp_path / "b", rep(0.30, final=None)),
               RunRecord(0, "stso", tmp_path / "c", rep(0.40, 0.45, final=0.46)),
               RunRecord(1, "stso", tmp_path / "d", rep(0.36, 0.41, final=0.42)),
               RunRecord(0, "atso", tmp_path / "e", rep(0.40, 0.47, final=0.50)),
               RunRecord(1, "atso", tmp_path / "f", rep(0.30, 0.35, final=0.37))]
    summary = summarise(records)
    pairs = summary["paired_differences"]
    assert pairs["atso-stso"]["per_seed"] == [pytest.approx(0.04), None] and pairs["atso-stso"]["n"] == 1
    assert pairs["stso-supervised"]["per_seed"] == [pytest.approx(0.06), None]
    assert pairs["atso-supervised"]["per_seed"] == [pytest.approx(0.10), pytest.approx(0.07)]
    assert summary["final"]["stats"]["stso"]["n"] == 2  # the run itself still counts
    assert summary["different_m0"] == [{"seed": 1, "method": "stso", "m0_test_dsc": 0.36,
                                        "labeled_only_m0_test_dsc": 0.30}]
    assert "Seed 1 STSO started from another training of M0 (its G0 test DSC 36.0, the labeled-only run's 30.0)" \
        in render_markdown(summary, "p")


def test_without_labels_correlates_every_label_free_monitor_with_the_truth_by_hand():
    from atso_nnunet.comparison.summary import _spearman, without_labels

    def rep(ref, vol, change, drifted):
        return {"generations": [{"generation": 0, "reference_dsc": 0.4, "volume_vs_m0": 1.0}] + [
            {"generation": t, "reference_dsc": r, "volume_vs_m0": v, "change": c, "agreement": {"R1": c},
             "empty_pseudo_labels": 0} for t, (r, v, c) in enumerate(zip(ref, vol, change), 1)],
            "without_labels": {"drift": {"drifted": drifted, "first_generation": 2 if drifted else None}}}

    by = {("atso", 0): rep([0.5, 0.4, 0.3], [0.9, 0.7, 0.6], [0.6, 0.7, 0.8], True),
          ("stso", 0): rep([0.5, 0.55, 0.56], [1.0, 1.1, 1.2], [0.8, 0.9, 0.9], False)}
    w = without_labels(by)
    assert w["n"]["volume vs M0"] == 6 and w["n"]["empty"] == 6
    assert w["spearman"]["volume vs M0"] == pytest.approx(_spearman([0.5, 0.4, 0.3, 0.5, 0.55, 0.56],
                                                                    [0.9, 0.7, 0.6, 1.0, 1.1, 1.2]))
    assert w["pearson"]["empty"] is None  # no spread
    assert w["drift"] == [{"method": "atso", "seed": 0, "drifted": True, "first_generation": 2},
                          {"method": "stso", "seed": 0, "drifted": False, "first_generation": None}]
    # Spearman by hand: ranks of (1, 2, 3, 4) against (1, 3, 2, 4): 1 - 6 * 2 / (4 * 15) = 0.8
    assert _spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert _spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.8660254, abs=1e-6)  # ties averaged


def test_pseudo_label_volumes_per_generation_by_hand(tmp_path):
    """Issue 25 item 5: the pseudo-labels' volume vs M0 and the vote/view ratio per generation, mean ± sd over
    the finished seeds, in the table and the CSV; '–' where a run did not record them."""
    from atso_nnunet.comparison.report import render_csv, render_markdown
    from atso_nnunet.comparison.run import RunRecord
    from atso_nnunet.comparison.summary import summarise

    def rep(vol, vote, final):
        return {"final_test_dsc": final, "generations": [
            {"generation": t, "test_dsc": 0.5, "reference_dsc": 0.4, "volume_vs_m0": v, "vote_vs_views": r}
            for t, (v, r) in enumerate(zip(vol, vote))]}

    records = [RunRecord(0, "atso", tmp_path / "a", rep([1.0, 0.8], [0.70, 0.60], 0.5), volume_vs_truth={1: 0.5}),
               RunRecord(1, "atso", tmp_path / "b", rep([1.0, 0.6], [0.80, 0.70], 0.5), volume_vs_truth={1: 0.7}),
               RunRecord(0, "stso", tmp_path / "c", rep([1.0, None], [None, None], 0.5))]
    summary = summarise(records)
    g1 = summary["per_generation"]["atso"][1]
    assert g1["volume_vs_m0"]["mean"] == pytest.approx(0.7)
    assert g1["volume_vs_m0"]["sd"] == pytest.approx(0.141421, abs=1e-5)
    assert g1["vote_vs_views"]["per_seed"] == [0.60, 0.70]
    md = render_markdown(summary, "p")
    assert "| ATSO | G1 | 40.0 ± 0.0 | – | – | – | 0.60 ± 0.14 | 0.70 ± 0.14 | 0.65 ± 0.07 |" in md
    assert "| STSO | G1 | 40.0 | – | – | – | – | – | – |" in md
    rows = render_csv(summary).splitlines()
    assert rows[0].split(",")[8:11] == ["volume_vs_truth", "volume_vs_m0", "vote_vs_views"]
    assert "atso,1,1,0.5,0.4,,,,0.7,0.6,0.7,0.5" in rows


def test_the_pseudo_labels_volume_against_the_truth_is_read_from_the_scoring_of_r(tmp_path):
    """eval/R_g{t}/R.json records predicted and true voxels per case: their sums' ratio, per generation;
    a generation scored only per subset (R_h1) or without ground truth gives nothing."""
    from atso_nnunet.comparison.run import truth_volume_ratios
    from atso_nnunet.io import write_json

    def scores(*cases):
        return {"details": {"cases": [{"case": f"c{i}", "voxels_pred": {"1": p}, "voxels_gt": {"1": g}}
                                      for i, (p, g) in enumerate(cases)]}}

    write_json(scores((100, 200), (50, 100)), tmp_path / "eval" / "R_g0" / "R.json")
    write_json(scores((330, 300)), tmp_path / "eval" / "R_g2" / "R.json")
    write_json(scores((10, 20)), tmp_path / "eval" / "R_g1" / "R_h1.json")
    write_json(scores((10, 0)), tmp_path / "eval" / "R_g3" / "R.json")
    assert truth_volume_ratios(tmp_path) == {0: 0.5, 2: pytest.approx(1.1)}


def test_a_comparison_refused_by_the_data_checks_leaves_nothing_behind(tmp_path, monkeypatch, caplog):
    """Issue 29: the first run's raw data check refuses a label value the dataset does not declare;
    its run folder, the comparison folder and the nnU-Net folders made for it are removed again."""
    import numpy as np

    from atso_nnunet.cli import compare
    from atso_nnunet.io import read_array, write_array
    from helpers import tiny_plan

    monkeypatch.setenv("ATSO_WARM_WORKERS", "0")
    source = write_tiny_dataset(tmp_path / "nn" / "nnUNet_raw", dataset_id=990, name="Tiny", n_labeled=9,
                                n_reference=0, n_test=0)
    label = source / "labelsTr" / "tiny_001.nii.gz"
    array, geometry = read_array(label)
    write_array(np.where(array > 0, 7, 0).astype(np.uint8), geometry, label)
    plan = tiny_plan(tmp_path)

    def tree():
        return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))

    before = tree()
    rc = compare.main(["--plan", str(plan), "--nnunet-dir", str(tmp_path / "nn"), "--out", str(tmp_path / "cmp"),
                       "--methods", "supervised", "--seeds", "0"])
    assert rc == 2 and "tiny_001" in caplog.text
    assert tree() == before
