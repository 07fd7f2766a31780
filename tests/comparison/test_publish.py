"""Publishing a comparison: the records that make its tables, copied without the models, and the
tables re-derived from the copies; plus the guard on the benchmarks published in docs/."""
from __future__ import annotations

import json
import shutil

import pytest

from atso_nnunet.comparison.run import ComparisonOptions, read_records, run_comparison
from atso_nnunet.comparison.summary import summarise
from atso_nnunet.errors import InputError
from atso_nnunet.paths import NnUNetPaths
from atso_nnunet.plan import plan_from_dict
from atso_nnunet.comparison.publish import publish_comparison

from helpers import REPO, install_fake_prepare, write_tiny_dataset
from fake_nnunet import FakeNnUNetExecutor

POOL = [f"tiny_{i:03d}" for i in range(7)]


def _plan():
    return plan_from_dict({"name": "pub", "sources": ["Dataset990_Tiny"], "dataset_id": 991, "dataset_name": "Pub",
                           "labeled": POOL[:3], "reference": POOL[3:], "test": ["tiny_007", "tiny_008"],
                           "method": "atso", "generations": 1, "views": ["axial"]})


@pytest.fixture(scope="module")
def made_once(tmp_path_factory):
    """A tiny comparison (fake nnU-Net), made once for the module; tests get a copy (``comparison``)."""
    base = tmp_path_factory.mktemp("made")
    paths = NnUNetPaths.under(base / "nnunet")
    paths.makedirs()
    write_tiny_dataset(paths.raw, dataset_id=990, name="Tiny", n_labeled=3, n_reference=4, n_test=2)
    with pytest.MonkeyPatch.context() as mp:
        install_fake_prepare(mp)
        run_comparison(_plan(), ComparisonOptions(out_dir=base / "cmp", paths=paths, executor=FakeNnUNetExecutor(),
                                                  seeds=[0, 1], methods=["supervised", "stso", "atso"],
                                                  command="atso_nnunet_compare --plan pub.json"))
    return base / "cmp", paths


@pytest.fixture
def comparison(tmp_path, made_once):
    shutil.copytree(made_once[0], tmp_path / "cmp", symlinks=True)
    return tmp_path / "cmp"


def _numbers(path):
    return json.loads((path / "comparison.json").read_text())


def test_published_records_reproduce_the_tables_without_models(tmp_path, made_once, comparison):
    dst = tmp_path / "docs" / "pub"
    records = publish_comparison(comparison, dst)
    assert {(r.seed, r.method) for r in records} == {(s, m) for s in (0, 1) for m in ("supervised", "stso", "atso")}
    # the same tables, reproducing command included, from kilobytes of records
    assert _numbers(dst) == _numbers(comparison)
    assert (dst / "comparison.md").read_text() == (comparison / "comparison.md").read_text()
    published = {p.relative_to(dst).parts[2] for p in dst.glob("seed*/*/*")}
    assert published <= {"report.json", "report.md", "report.csv", "report_logs.md", "plan.json", "g0_key.json",
                         "run.log", "state", "eval", "published.json"}
    assert not list(dst.rglob("*.pth")) and not list(dst.rglob("*.nii.gz"))
    # adopted generation-0 scores are links in the run folders, files in the publication
    assert not [p for p in dst.rglob("*") if p.is_symlink()]
    assert (dst / "seed1" / "atso" / "eval").is_dir()
    # anyone can re-derive them: --report-only on the published folder
    again = tmp_path / "again"
    shutil.copytree(dst, again)
    (again / "comparison.json").unlink()
    run_comparison(_plan(), ComparisonOptions(out_dir=again, paths=made_once[1], seeds=[0, 1],
                                              methods=["supervised", "stso", "atso"], report_only=True,
                                              command="atso_nnunet_compare --plan pub.json"))
    assert _numbers(again) == _numbers(dst)


def test_a_changed_record_changes_the_published_table(tmp_path, comparison):
    dst = tmp_path / "pub"
    publish_comparison(comparison, dst)
    rep = json.loads((comparison / "seed0" / "stso" / "report.json").read_text())
    rep["final"]["test_dsc_mean"] = 0.123
    (comparison / "seed0" / "stso" / "report.json").write_text(json.dumps(rep))
    publish_comparison(comparison, dst)  # a second publication replaces the first
    assert _numbers(dst)["final"]["per_seed"]["stso"]["0"] == pytest.approx(0.123)


def test_a_failed_publication_leaves_the_previous_one_whole(tmp_path, comparison, monkeypatch):
    dst = tmp_path / "pub"
    publish_comparison(comparison, dst)
    before = {p.relative_to(dst): p.read_bytes() for p in dst.rglob("*") if p.is_file()}
    calls, copy = [], shutil.copyfile

    def flaky(a, b, **kw):
        calls.append(a)
        if len(calls) == 20:
            raise OSError("disk full")
        return copy(a, b, **kw)

    monkeypatch.setattr("atso_nnunet.comparison.publish.shutil.copyfile", flaky)
    with pytest.raises(OSError, match="disk full"):
        publish_comparison(comparison, dst)
    assert {p.relative_to(dst): p.read_bytes() for p in dst.rglob("*") if p.is_file()} == before


def test_publishing_is_refused_into_a_run_folder_or_without_a_comparison(tmp_path, comparison):
    with pytest.raises(InputError, match="outside the comparison's run folders"):
        publish_comparison(comparison, comparison / "seed0" / "stso" / "pub")
    with pytest.raises(InputError, match="outside the comparison's run folders"):
        publish_comparison(comparison, comparison)
    with pytest.raises(InputError, match="no comparison.json"):
        publish_comparison(tmp_path / "nothing", tmp_path / "pub")
    shutil.rmtree(comparison / "seed1" / "atso")
    with pytest.raises(InputError, match="seed1/atso"):
        publish_comparison(comparison, tmp_path / "pub")
    assert not (tmp_path / "pub").exists()


def test_published_records_are_never_run_or_overwritten_by_a_publication(tmp_path, made_once, comparison):
    from atso_nnunet.run.driver import DriverOptions, run_experiment

    dst = tmp_path / "pub"
    publish_comparison(comparison, dst)
    before = {p.relative_to(dst): p.read_bytes() for p in dst.rglob("*") if p.is_file()}
    # the comparison without --report-only, and the driver on one published run, refuse it
    with pytest.raises(InputError, match="published comparison"):
        run_comparison(_plan(), ComparisonOptions(out_dir=dst, paths=made_once[1], executor=FakeNnUNetExecutor(),
                                                  seeds=[0, 1], methods=["supervised", "stso"]))
    with pytest.raises(InputError, match="published records of a run"):
        run_experiment(_plan(), DriverOptions(run_dir=dst / "seed0" / "stso", paths=made_once[1],
                                           executor=FakeNnUNetExecutor()))
    assert {p.relative_to(dst): p.read_bytes() for p in dst.rglob("*") if p.is_file()} == before
    # a publication of a publication is fine; one into a folder of runs would replace their models
    publish_comparison(dst, tmp_path / "copy")
    assert _numbers(tmp_path / "copy")["final"] == _numbers(dst)["final"]
    shutil.copytree(comparison, tmp_path / "runs", symlinks=True)
    with pytest.raises(InputError, match="not published records.*seed0/supervised"):
        publish_comparison(dst, tmp_path / "runs")
    assert (tmp_path / "runs" / "seed0" / "supervised" / "models").is_dir()


PUBLISHED = sorted(p.parent for p in (REPO / "docs" / "benchmarks").glob("*/comparison.json")
                   if list(p.parent.glob("seed*/*/report.json")))


@pytest.mark.parametrize("folder", PUBLISHED, ids=[p.name for p in PUBLISHED])
def test_the_published_benchmarks_are_what_their_records_say(folder):
    """docs/benchmarks/<name>/comparison.json, re-derived from the run records published beside it."""
    published = _numbers(folder)
    records = read_records(folder, published["seeds"], published["methods"])
    assert {(r.seed, r.method) for r in records} == {(r["seed"], r["method"]) for r in published["runs"]}
    derived = json.loads(json.dumps(summarise(records)))
    for key in ("final", "paired_differences", "per_generation", "monitor_correlation", "labeled_only", "oracle"):
        assert derived[key] == pytest.approx(published[key]) if not isinstance(derived[key], dict) \
            else _close(derived[key], published[key]), key


def _close(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, abs=1e-9)
    return a == b


def test_the_benchmarks_in_the_docs_have_their_records():
    """Every comparison published in docs/benchmarks/ comes with the records it was made from."""
    tables = sorted(p.parent.name for p in (REPO / "docs" / "benchmarks").glob("*/comparison.json"))
    assert tables and [p.name for p in PUBLISHED] == tables


def test_tables_re_derived_from_a_publication_keep_its_command(tmp_path, comparison, monkeypatch):
    """``atso_nnunet_compare --report-only --out <publication>`` re-derives the tables; their
    'Reproduce' line stays the command that made the runs (the publication's), not the
    --out <publication> one, which without --report-only is refused."""
    from atso_nnunet.cli import compare as cli

    dst = tmp_path / "pub"
    publish_comparison(comparison, dst)
    plan_file = tmp_path / "pub.json"
    plan_file.write_text(json.dumps(_plan().to_dict(include_split=True)))
    (dst / "comparison.md").unlink()
    argv = ["--plan", str(plan_file), "--seeds", "0", "1", "--methods", "supervised", "stso", "atso",
            "--out", str(dst), "--report-only"]
    monkeypatch.setattr("sys.argv", ["atso_nnunet_compare", *argv])
    assert cli.main(argv) == 0
    assert "Reproduce: `atso_nnunet_compare --plan pub.json`" in (dst / "comparison.md").read_text()
