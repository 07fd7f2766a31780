"""scripts/bench_state.sh: a benchmark's state packed and put back where it was, never over newer files."""
import os
import shutil
import subprocess

import pytest

from tests.helpers import REPO

SCRIPT = REPO / "scripts" / "bench_state.sh"


def bench_state(tmp_path, *args, exclude=""):
    env = dict(os.environ, BENCH_STATE_DIR=str(tmp_path / "archives"), BENCH_STATE_EXCLUDE=exclude)
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True)


@pytest.fixture
def run_folder(tmp_path):
    run = tmp_path / "bench" / "seed1" / "atso"
    (run / "models" / "fold_all").mkdir(parents=True)
    (run / "models" / "fold_all" / "checkpoint_latest.pth").write_bytes(b"latest")
    (run / "models" / "fold_all" / "checkpoint_best.pth").write_bytes(b"best")
    (run / "predictions").mkdir()
    (run / "predictions" / "case_000.npz").write_bytes(b"probabilities")
    (run / "run.log").write_text("g1/train/g1_h1/axial done\n")
    return run


def test_save_then_restore_puts_the_state_back_without_best_checkpoints_and_excluded_files(tmp_path, run_folder):
    done = bench_state(tmp_path, "save", "r1", str(run_folder), exclude="*.npz")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "archives" / "r1.tar.xz").is_file()
    shutil.rmtree(tmp_path / "bench")

    done = bench_state(tmp_path, "restore", "r1")
    assert done.returncode == 0, done.stderr
    assert (run_folder / "models" / "fold_all" / "checkpoint_latest.pth").read_bytes() == b"latest"
    assert (run_folder / "run.log").read_text() == "g1/train/g1_h1/axial done\n"
    assert not (run_folder / "models" / "fold_all" / "checkpoint_best.pth").exists()
    assert not (run_folder / "predictions" / "case_000.npz").exists()


def test_restore_refuses_to_write_over_a_run_that_went_on(tmp_path, run_folder):
    assert bench_state(tmp_path, "save", "r1", str(run_folder)).returncode == 0
    (run_folder / "run.log").write_text("newer\n")

    done = bench_state(tmp_path, "restore", "r1")
    assert done.returncode == 1
    assert "files already there" in done.stderr and "run.log" in done.stderr
    assert (run_folder / "run.log").read_text() == "newer\n"


@pytest.mark.parametrize("args, message", [
    (["save", "r1", "relative/path"], "give absolute paths"),
    (["save", "r1"], "name the folders to pack"),
    (["save", "../r1", "/tmp"], "letters, digits"),
    (["restore", "nothing_saved"], "no "),
])
def test_bad_input_is_refused_with_a_message_and_writes_no_archive(tmp_path, args, message):
    done = bench_state(tmp_path, *args)
    assert done.returncode != 0 and message in done.stderr
    assert not list((tmp_path / "archives").glob("*.tar.xz"))
