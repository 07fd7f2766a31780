"""A fake nnU-Net behind an executor: it reads the same argument lists nnU-Net would and writes
nnU-Net-shaped outputs (a checkpoint for a training, one label map per input image for a
prediction), so batching, resume, adoption and report assembly are tested in well under a second.

Prediction: the label is ``image > threshold`` (the tiny cases' organ is at +110 HU, the body
at +40), so every model 'predicts' the organ and scores are high and deterministic.
"""
from __future__ import annotations

import time
import zipfile
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from atso_nnunet.data import layout
from atso_nnunet.execution.jobs import Executor, Job, JobResult, check_batch
from atso_nnunet.io import read_array, write_array
from atso_nnunet.paths import result_folder_name


def _opt(argv: Sequence[str], flag: str) -> str:
    return argv[list(argv).index(flag) + 1]


class FakeNnUNetExecutor(Executor):
    """Runs ``nnUNetv2_train`` / ``nnUNetv2_predict`` argument lists without nnU-Net.

    Attributes:
        ran: names of the jobs run, in order (skipped ones are not listed).
        argvs: job name -> argument list of its last run.
        threshold: HU above which the fake prediction says foreground.
    """

    def __init__(self, threshold: float = 75.0):
        self.ran: List[str] = []
        self.argvs: Dict[str, List[str]] = {}
        self.threshold = threshold
        self.warmed_up: List[Path] = []  # log folders of warm_up calls, in order
        self.ran_when_warmed: List[int] = []  # len(self.ran) at each warm_up call

    def warm_up(self, log_dir: Path) -> None:
        self.warmed_up.append(Path(log_dir))
        self.ran_when_warmed.append(len(self.ran))

    def run_batch(self, jobs: Sequence[Job]) -> List[JobResult]:
        check_batch(jobs)
        out = []
        for job in jobs:
            t0 = time.time()
            tool = Path(job.argv[0]).name
            if tool == "nnUNetv2_train":
                self._train(job)
            elif tool == "nnUNetv2_predict":
                self._predict(job)
            else:
                raise AssertionError(f"unexpected command {job.argv}")
            job.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(job.log_path, "a") as log:
                log.write(" ".join(job.argv) + "\n")
            self.ran.append(job.name)
            self.argvs[job.name] = list(job.argv)
            out.append(JobResult(name=job.name, returncode=0, attempts=1, log_path=job.log_path,
                                 wall_s=time.time() - t0))
        return out

    @staticmethod
    def _train(job: Job) -> None:
        argv = job.argv
        dataset_id, configuration, fold = int(argv[1]), argv[2], argv[3]
        raw = Path(job.env["nnUNet_raw"])
        dataset = next(raw.glob(layout.dataset_prefix(dataset_id) + "*")).name
        folder = (Path(job.env["nnUNet_results"]) / dataset
                  / result_folder_name(_opt(argv, '-tr'), _opt(argv, '-p'), configuration) / f"fold_{fold}")
        folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(folder / "checkpoint_final.pth", "w") as archive:   # torch.save's format
            archive.writestr("checkpoint_final/data.pkl", b"fake: never loaded")

    def _predict(self, job: Job) -> None:
        src, dst = Path(_opt(job.argv, "-i")), Path(_opt(job.argv, "-o"))
        dst.mkdir(parents=True, exist_ok=True)
        for image in sorted(src.glob("*_0000.nii.gz")):
            arr, geom = read_array(image)
            case = image.name[: -len("_0000.nii.gz")]
            write_array((arr > self.threshold).astype("uint8"), geom, dst / f"{case}.nii.gz")
            if "--save_probabilities" in job.argv:
                p1 = 1.0 / (1.0 + np.exp(np.clip(-(arr.astype(np.float32) - self.threshold) / 10.0, -50, 50)))
                np.savez_compressed(dst / f"{case}.npz", probabilities=np.stack([1 - p1, p1]).astype(np.float32))
                (dst / f"{case}.pkl").write_bytes(b"fake")
