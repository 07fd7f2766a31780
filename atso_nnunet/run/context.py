"""What a run's steps share: :class:`RunContext` (the plan, nnU-Net's folders, the run folder, the
experiment dataset, the device) and where each artefact a step names lives (:meth:`RunContext.path`).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

from atso_nnunet.data import layout
from atso_nnunet.errors import InputError
from atso_nnunet.paths import NnUNetPaths, result_folder_name
from atso_nnunet.run.rundir import RunDir
from atso_nnunet.schedule import GroundTruth, Model
from atso_nnunet.views import plans_identifier

@dataclass
class RunContext:
    """Everything a step needs to run.

    Attributes:
        plan: the experiment.
        paths: nnU-Net folders (raw and preprocessed shared; results per model, see RunDir).
        run: the run folder.
        dataset_dir: the materialised experiment dataset in ``paths.raw``.
        device: ``cpu`` or ``cuda`` for nnU-Net's ``-device``.
        num_processes: worker processes for in-process preprocessing / ingestion.
        training: training settings per role (``M0``, ``student``, ``self``, ``final`` ...):
            a function from the role to the trainer run-config fields, plus prediction settings
            under the role ``predict``.
    """

    plan: Any
    paths: NnUNetPaths
    run: RunDir
    dataset_dir: Path
    device: str = "cpu"
    num_processes: int = 1
    training: Callable[[str], Dict[str, Any]] = field(default=lambda role: {})

    @property
    def dataset_name(self) -> str:
        return self.dataset_dir.name

    def model_paths(self, model: Model) -> NnUNetPaths:
        return NnUNetPaths(self.paths.raw, self.paths.preprocessed, self.run.results_root(model.name))

    def model_folder(self, model: Model) -> Path:
        """nnU-Net's fold folder of a trained model (holds ``checkpoint_final.pth``)."""
        return (self.run.results_root(model.name) / self.dataset_name
                / result_folder_name(model.trainer, plans_identifier(model.view), self.plan.configuration)
                / f"fold_{self.plan.fold}")

    def path(self, artefact) -> Path:
        """Where an artefact of the schedule lives."""
        if isinstance(artefact, Model):
            return self.model_folder(artefact)
        if isinstance(artefact, GroundTruth):
            # training targets must carry the dataset's labels: with a label map (MSD tumour 2 ->
            # pancreas 1) the oracle trains on mapped copies (write_mapped_truth)
            return self.run.mapped_truth() if self.eval_label_map() else self.dataset_dir / layout.LABELS_REF
        return self.run.path(artefact)

    def image(self, case: str) -> Path:
        """Channel-0 image of a case in the experiment dataset."""
        for folder in (layout.IMAGES_TR, layout.IMAGES_REF, layout.IMAGES_TS):
            p = layout.image_path(self.dataset_dir, folder, case)
            if p.exists():
                return p
        raise InputError(f"case {case}: no image in {self.dataset_dir} (imagesTr, imagesRef, imagesTs)")

    def ground_truth_dir(self, role: str) -> Path:
        return self.dataset_dir / (layout.LABELS_TS if role == "test_eval" else layout.LABELS_REF)

    @functools.cached_property
    def foreground(self) -> Tuple[int, ...]:
        """Foreground label values of the experiment dataset (read once from its dataset.json)."""
        labels = json.loads((self.dataset_dir / "dataset.json").read_text())["labels"]
        return tuple(layout.foreground_labels(labels).values())

    def eval_label_map(self) -> Dict[int, int]:
        return {int(k): int(v) for k, v in self.plan.eval_label_map.items()}
