"""The driver: plan checks before work, dry run, lock, resume, and a tiny end-to-end run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from atso_nnunet.cli.run import main
from atso_nnunet.errors import RunLockedError
from atso_nnunet.run.rundir import RunLock

from helpers import tiny_plan, write_tiny_dataset


def _tiny_run(tmp_path: Path):
    """A tiny source dataset, its plan, and the driver command (in a subprocess, as users run it)."""
    nn = tmp_path / "nn"
    write_tiny_dataset(nn / "nnUNet_raw", dataset_id=990, name="Tiny", n_labeled=9, n_reference=0, n_test=0)
    plan = tiny_plan(tmp_path)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "atso_nnunet.cli.run", "--plan", str(plan), "--nnunet-dir", str(nn),
           "--run-dir", str(run), "--num-processes", "1"]
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_n_proc_DA"}
    return nn, run, cmd, env


def test_bad_plan_rejected_before_any_work(tmp_path, caplog):
    p = tiny_plan(tmp_path, reference=["tiny_003", "tiny_000"], metod="atso")
    nn = tmp_path / "nn"
    assert main(["--plan", str(p), "--nnunet-dir", str(nn), "--run-dir", str(tmp_path / "run")]) == 2
    text = caplog.text
    assert "tiny_000" in text and "metod" in text  # all problems listed at once
    assert not (tmp_path / "run").exists()
    assert not nn.exists()


def test_missing_source_names_the_conversion_command(tmp_path, caplog):
    rc = main(["-d", "NIH", "-f", "10pct", "--nnunet-dir", str(tmp_path / "nn"), "--run-dir", str(tmp_path / "run")])
    assert rc == 2
    assert "atso_nnunet_convert nih" in caplog.text
    assert not list((tmp_path / "nn" / "nnUNet_preprocessed").rglob("*"))


def test_unknown_training_key_is_an_error(tmp_path, caplog):
    p = tiny_plan(tmp_path, training={"num_epoch": 3})
    assert main(["--plan", str(p), "--nnunet-dir", str(tmp_path / "nn"), "--dry-run"]) == 2
    assert "num_epoch" in caplog.text and "num_epochs" in caplog.text


def test_dry_run_prints_nnunet_commands(tmp_path, capsys):
    rc = main(["-d", "synthetic", "-f", "10pct", "--nnunet-dir", str(tmp_path / "nn"),
               "--run-dir", str(tmp_path / "run"), "--dry-run"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "nnUNetv2_train 981 2d all -tr ATSOTrainer -p ATSOPlans_axial -device cpu" in out
    assert "-tr ATSOSemiTrainer -p ATSOPlans_sagittal" in out
    assert "nnUNetv2_predict -i" in out and "ATSO_RUN_CONFIG=" in out
    assert "--step g1/fuse/R_g1" in out
    # nothing was trained or prepared
    assert not (tmp_path / "nn" / "nnUNet_raw" / "Dataset980_SyntheticA").exists()
    assert (tmp_path / "run" / "plan.json").is_file()


def test_run_lock_refuses_second_driver(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):  # released again
        pass


def test_run_dir_with_other_plan_is_refused(tmp_path, caplog):
    run = tmp_path / "run"
    args = ["-d", "synthetic", "-f", "10pct", "--nnunet-dir", str(tmp_path / "nn"), "--run-dir", str(run), "--dry-run"]
    assert main(args) == 0
    # a run that never started (no step finished) is taken over by another plan, and says so
    assert main(args + ["--generations", "3"]) == 0
    assert "never started" in caplog.text and "generations" in caplog.text
    assert json.loads((run / "plan.json").read_text())["generations"] == 3
    # once a step has finished, another plan is refused
    (run / "state").mkdir()
    (run / "state" / "prepare.done").write_text("{}")
    assert main(args) == 2
    assert "different plan" in caplog.text and "--overwrite" in caplog.text


@pytest.mark.e2e
def test_tiny_atso_run_end_to_end_and_resume(tmp_path):
    """One view, two generations on tiny volumes: M0, two half-models, M_1, the final model M_2; then resume."""
    nn, run, cmd, env = _tiny_run(tmp_path)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((run / "report.json").read_text())
    assert report["method"] == "atso"
    assert [g["generation"] for g in report["generations"]] == [0, 1, 2]
    assert report["final"]["test_dsc_mean"] is not None
    assert report["final_label_round"] == 2 and report["cost"] == {"trainings": 5, "iterations": 10}
    assert sorted(p.name for p in (run / "pseudolabels" / "R_g1").glob("*.nii.gz")) == \
        [f"tiny_00{i}.nii.gz" for i in range(3, 7)]
    markers = {p: p.stat().st_mtime_ns for p in (run / "state").rglob("*.done")}
    # rerun: nothing is redone
    res2 = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res2.returncode == 0, res2.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in (run / "state").rglob("*.done")} == markers
    assert "nnUNetv2_train" not in res2.stderr

    # segment new scans with the final models (what a hospital runs)
    from atso_nnunet.cli.segment import main as segment_main
    from atso_nnunet.io import read_array

    new = tmp_path / "new_scans"
    new.mkdir()
    src = nn / "nnUNet_raw" / "Dataset990_Tiny" / "imagesTr" / "tiny_007_0000.nii.gz"
    (new / "scan_0000.nii.gz").write_bytes(src.read_bytes())
    assert segment_main(["--run-dir", str(run), "-i", str(new), "-o", str(tmp_path / "seg"), "--no-mirroring"]) == 0
    seg, geom = read_array(tmp_path / "seg" / "scan.nii.gz")
    assert geom == read_array(src)[1]


def test_segment_refuses_an_unfinished_run(tmp_path, caplog):
    from atso_nnunet.cli.segment import main as segment_main

    args = ["-d", "synthetic", "-f", "10pct", "--nnunet-dir", str(tmp_path / "nn"), "--run-dir", str(tmp_path / "run"),
            "--dry-run"]
    assert main(args) == 0
    assert segment_main(["--run-dir", str(tmp_path / "run"), "-i", str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    assert "not trained yet" in caplog.text


@pytest.mark.slow
def test_killed_driver_resumes_without_redoing_finished_steps(tmp_path):
    """SIGKILL the driver in the middle of generation 1, start it again, compare with what was done."""
    import signal
    import time

    nn, run, cmd, env = _tiny_run(tmp_path)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (run / "state" / "g1" / "train" / "g1_h1" / "axial.done").exists():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p: p.stat().st_mtime_ns for p in (run / "state").rglob("*.done")}
    pseudo_before = {p.name: p.read_bytes() for p in (run / "pseudolabels" / "R_g0").glob("*.nii.gz")}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    for marker, mtime in done_before.items():
        assert marker.stat().st_mtime_ns == mtime, f"{marker} was redone"
    assert {p.name: p.read_bytes() for p in (run / "pseudolabels" / "R_g0").glob("*.nii.gz")} == pseudo_before
    assert json.loads((run / "report.json").read_text())["final"]["test_dsc_mean"] is not None


def test_slurm_settings_from_plan_and_flags(tmp_path):
    """The plan's slurm section gives defaults; --slurm-* flags override; unknown keys are named."""
    from atso_nnunet.cli.run import build_parser, slurm_config
    from atso_nnunet.errors import InputError
    from atso_nnunet.execution.slurm.submission import render_submission
    from atso_nnunet.execution.jobs import Job
    from atso_nnunet.plan import load_plan

    plan = load_plan(tiny_plan(tmp_path, slurm={"partition": "gpu", "time_min": 600,
                                                 "extra_sbatch_lines": ["module load cuda/12.1"]}))
    args = build_parser().parse_args(["--plan", "x", "--executor", "slurm", "--slurm-time-min", "90"])
    cfg = slurm_config(args, plan, tmp_path / "run")
    assert (cfg.partition, cfg.time_min, cfg.log_folder) == ("gpu", 90, tmp_path / "run" / "slurm")
    jobs = [Job(name=f"j{i}", argv=["true"], log_path=tmp_path / f"j{i}.log") for i in range(6)]
    script = render_submission(jobs, cfg)
    assert "--partition=gpu" in script and "module load cuda/12.1" in script and "--array=0-5" in script
    with pytest.raises(InputError, match="slurm.partion: unknown key"):  # refused when the plan is loaded
        load_plan(tiny_plan(tmp_path, slurm={"partion": "gpu"}))


def test_stale_temporaries_of_a_killed_driver_are_removed(tmp_path):
    from atso_nnunet.run.rundir import RunDir

    run = RunDir(tmp_path / "run")
    folder = run.pseudo_labels("R_g1")
    folder.mkdir(parents=True)
    # what io.atomic_path leaves when the driver is SIGKILLed mid-write (its finally never runs)
    leftover = folder / ".case.nii.gz.k3j2x9.partial.nii.gz"
    leftover.write_bytes(b"half")
    (folder / "done.nii.gz").write_bytes(b"ok")
    (run.root / "state").mkdir(parents=True)
    (run.root / "state" / "prepare.done").write_text("{}")
    assert run.remove_stale_temporaries() == [leftover]
    assert not leftover.exists() and (folder / "done.nii.gz").is_file() and run.is_done("prepare")


def _proc_stat(pid: int):
    """(parent pid, start time) of a live process from /proc, or None (gone, or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[19]))


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _descendants(root: int) -> dict:
    """pid -> (parent pid, start time) of every live descendant of ``root``."""
    procs = {int(p.name): _proc_stat(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    procs = {pid: st for pid, st in procs.items() if st is not None}
    found, frontier = {}, {root}
    while frontier:
        children = {pid for pid, (ppid, _) in procs.items() if ppid in frontier and pid not in found}
        found.update({pid: procs[pid] for pid in children})
        frontier = children
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_driver_sigkilled_while_planning_leaves_no_process_behind(tmp_path):
    """Issue 29 item 8: nnU-Net's planning pools run in a child process group that dies with the driver."""
    import signal
    import subprocess
    import time

    nn, run, cmd, env = _tiny_run(tmp_path)
    cmd = cmd[:-1] + ["2"]                                      # --num-processes 2: nnU-Net's spawn pools
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen, deadline = {}, time.monotonic() + 240
    try:
        # during planning: nnU-Net's spawn pool is up (two or more spawned processes below the driver)
        while time.monotonic() < deadline and proc.poll() is None:
            now = _descendants(proc.pid)
            seen.update(now)
            spawned = [pid for pid in now if b"spawn_main" in _cmdline(pid)]
            if len(spawned) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the driver ended before its planning pools were seen"
        assert "tri-view planning and preprocessing ready" not in (run / "run.log").read_text()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        left = seen
        for _ in range(100):
            time.sleep(0.1)
            left = {pid: st for pid, st in seen.items() if (_proc_stat(pid) or (0, None))[1] == st[1]}
            if not left:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not left, f"{len(left)} of {len(seen)} processes outlived the driver: {sorted(left)}"
