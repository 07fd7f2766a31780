"""The folder of one run: where each named artefact of the schedule lives, markers and the lock.

::

    <run_dir>/
      plan.json                      the resolved experiment plan (reference split included)
      run.log                        the driver's log
      state/<step id>.done           completion markers (JSON: when, how long); the only truth
      logs/<step id>.log             stdout/stderr of each nnU-Net command (attempts appended)
      configs/<step id>.json         trainer run configs (ATSO_RUN_CONFIG)
      models/<model>/nnUNet_results/ an nnU-Net results root per model
      inputs/<R|E|RE>/               links to the images a prediction reads
      predictions/<model>/<view>/    nnU-Net's per-view predictions of R and E
      pseudolabels/R_g<t>/           pseudo-label sets (fused, original geometry)
      labels/R_truth/                R's ground truth with the plan's eval_label_map applied (oracle)
      fused/<name>/<R|E>/            fused predictions used for scoring
      eval/<target>/<part>.json      scores
      eval/monitors/<name>.json      label-free monitors
      report.{md,csv,json,png}
      published.json                 only in a published copy of a run's records (atso_nnunet.comparison.publish):
                                     scores without models, never run or continued
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import List, Optional

from atso_nnunet.errors import RunLockedError
from atso_nnunet.io import read_json, write_json


PUBLISHED = "published.json"


class RunDir:
    """Paths of a run's artefacts (names as in :mod:`atso_nnunet.schedule`)."""

    def __init__(self, root: os.PathLike):
        self.root = Path(root).resolve()

    # files
    @property
    def plan_file(self) -> Path:
        return self.root / "plan.json"

    @property
    def published_file(self) -> Path:
        """Marks a published copy of a run's records (:mod:`atso_nnunet.comparison.publish`), which no driver may run."""
        return self.root / PUBLISHED

    @property
    def log_file(self) -> Path:
        return self.root / "run.log"

    def marker(self, step_id: str) -> Path:
        return self.root / "state" / f"{step_id}.done"

    def is_done(self, step_id: str) -> bool:
        return self.marker(step_id).is_file()

    def started(self) -> bool:
        """Whether any step of this run has finished (a run refused at its start has none)."""
        state = self.root / "state"
        return state.is_dir() and any(not p.name.startswith(".") for p in state.rglob("*.done"))

    def remove_stale_temporaries(self) -> List[Path]:
        """Delete what atomic writes of a killed driver left (``.<name>.<random>.partial<suffix>``).

        Call only while holding the run's lock: then no write is in progress.
        """
        stale = [p for p in self.root.rglob(".*.partial*") if p.is_file() and not p.is_symlink()]
        for p in stale:
            p.unlink()
        return stale

    def mark_done(self, step_id: str, seconds: float, **extra) -> None:
        write_json({"step": step_id, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "seconds": round(seconds, 2), **extra}, self.marker(step_id))

    def step_log(self, step_id: str) -> Path:
        return self.root / "logs" / f"{step_id}.log"

    def run_config(self, step_id: str) -> Path:
        return self.root / "configs" / f"{step_id}.json"

    # artefacts
    # the run's folders, one name each
    @property
    def models_root(self) -> Path:
        return self.root / "models"

    @property
    def inputs_root(self) -> Path:
        return self.root / "inputs"

    @property
    def predictions_root(self) -> Path:
        return self.root / "predictions"

    @property
    def pseudo_labels_root(self) -> Path:
        return self.root / "pseudolabels"

    @property
    def fused_root(self) -> Path:
        return self.root / "fused"

    def results_root(self, model: str) -> Path:
        """``nnUNet_results`` root of one model (an ordinary nnU-Net results folder below it)."""
        return self.models_root / model / "nnUNet_results"

    def inputs(self, parts: str) -> Path:
        return self.inputs_root / parts

    def predictions(self, model: str, view: str) -> Path:
        return self.predictions_root / model / view

    def pseudo_labels(self, name: str) -> Path:
        return self.pseudo_labels_root / name

    def fused(self, name: str, part: str) -> Path:
        """Fused predictions of a model on R or E (``part``), or of an ensemble (``name``)."""
        return self.fused_root / name / part

    def mapped_truth(self) -> Path:
        """R's ground truth with the plan's ``eval_label_map`` applied: the oracle's training labels."""
        return self.root / "labels" / "R_truth"

    def evaluation(self, target: str, part: str) -> Path:
        return self.root / "eval" / target / f"{part}.json"

    def read_evaluation(self, target: str, part: str) -> Optional[dict]:
        return read_json(self.evaluation(target, part))

    def monitor(self, name: str) -> Path:
        return self.root / "eval" / "monitors" / f"{name}.json"

    def resumed_trainings(self, training_steps: List[str]) -> Optional[List[dict]]:
        """The finished trainings among ``training_steps`` that were continued with ``--c`` (from their
        completion markers); None while none of them has finished."""
        out, finished = [], False
        for step in training_steps:
            marker = read_json(self.marker(step))
            if marker is None:
                continue
            finished = True
            marker = marker.get("original", marker) if "shared_from" in marker else marker   # adopted M0
            if marker.get("resumed"):
                out.append({"step": step, "epochs": marker.get("resumed_at_epochs", []),
                            "exact": bool(marker.get("resume_exact"))})
        return out if finished else None

    def path(self, artefact) -> Path:
        """Where a schedule artefact (:mod:`atso_nnunet.schedule.artefacts`) lives in this run.

        Models and ground truth live outside the run's own folders and are resolved by the run
        context (:meth:`atso_nnunet.run.context.RunContext.path`).
        """
        from atso_nnunet.schedule import artefacts as a

        if isinstance(artefact, a.Prediction):
            return self.predictions(artefact.model.name, artefact.model.view)
        if isinstance(artefact, a.LabelSet):
            if artefact.is_pseudo_labels:
                return self.pseudo_labels(artefact.name)
            return self.fused(artefact.name, artefact.part)
        if isinstance(artefact, a.Score):
            return self.evaluation(artefact.target, artefact.part)
        if isinstance(artefact, a.Monitor):
            return self.monitor(artefact.name)
        if isinstance(artefact, a.Report):
            return self.root / "report.md"
        raise TypeError(f"the run folder does not hold {artefact!r} itself")


class RunLock:
    """Exclusive lock on a run folder: a second driver on the same run is refused.

    Uses ``flock`` on ``<run_dir>/.driver.lock``; the lock dies with the process, so a killed
    driver never leaves a stale lock behind.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".driver.lock"
        self._fd: Optional[int] = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            raise RunLockedError(
                f"another atso_nnunet_run is working on {self.path.parent} (pid {holder or '?'}); "
                "wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
