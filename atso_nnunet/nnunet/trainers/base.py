"""``ATSOTrainer``: nnU-Net's trainer with a per-run schedule and an optional teacher init.

The settings come from :class:`~atso_nnunet.nnunet.trainers.config.TrainerRunConfig.from_env` (the
trainer constructor is fixed by nnU-Net). Everything else is nnU-Net's ``nnUNetTrainer``.

With a training seed, every epoch is seeded from ``(seed, epoch)`` (:mod:`atso_nnunet.nnunet.trainers.seeding`),
so a training killed at any point and continued with ``nnUNetv2_train --c`` ends with the same
weights as one that ran through. Checkpoints are written atomically, so a kill while one is being
written leaves the previous one intact.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import torch
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel as DDP

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from atso_nnunet.errors import InputError
from atso_nnunet.io import read_json
from atso_nnunet.plan.training import training_fields
from atso_nnunet.nnunet.trainers.config import TrainerRunConfig
from atso_nnunet.nnunet.trainers.resumes import record_resume
from atso_nnunet.nnunet.trainers.seeding import reset_channel_orders, seed_all, seed_epoch

RUN_CONFIG_FILE = "atso_run_config.json"


class ATSOTrainer(nnUNetTrainer):
    """nnU-Net trainer driven by ``ATSO_RUN_CONFIG`` / ``ATSO_*`` (see :mod:`atso_nnunet.nnunet.trainers.config`).

    Attributes:
        run_config: the resolved :class:`TrainerRunConfig` of this run.
    """

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.run_config = TrainerRunConfig.from_env()
        if self.run_config.seed is not None:
            seed_all(self.run_config.seed)          # the network's initial weights
        self._best_ema_kept = _UNSET                 # the true best EMA while on_epoch_end hides it
        # settings that replace an nnUNetTrainer attribute (declared in TrainingSettings)
        for f in training_fields():
            value = getattr(self.run_config, f.name)
            if value is not None and f.metadata["trainer_attribute"]:
                setattr(self, f.metadata["trainer_attribute"], value)

    def on_train_start(self):
        if not self.was_initialized:
            self.initialize()
        # current_epoch > 0: a continued training (--c) already loaded its own checkpoint
        if self.run_config.init_from_checkpoint and self.current_epoch == 0:
            self.load_init_weights(self.run_config.init_checkpoint)
        if self.current_epoch > 0:
            self._check_resume()
        super().on_train_start()
        if self.local_rank == 0:
            self.run_config.to_json(Path(self.output_folder) / RUN_CONFIG_FILE)
            self.print_to_log_file(f"ATSO run config: {self.run_config.to_dict()}")

    def load_init_weights(self, checkpoint_file: str) -> None:
        """Load all network weights (segmentation head included) from an nnU-Net checkpoint.

        Raises:
            InputError: the file is missing or its weights do not fit this network.
        """
        if not Path(checkpoint_file).is_file():
            raise InputError(f"init checkpoint {checkpoint_file} not found")
        saved = torch.load(checkpoint_file, map_location=self.device, weights_only=False)
        weights = saved.get("network_weights", saved) if isinstance(saved, dict) else saved
        # strip the prefixes DDP ('module.') and torch.compile ('_orig_mod.') add to state dict keys
        state = {}
        for key, value in weights.items():
            for prefix in ("module.", "_orig_mod."):
                if key.startswith(prefix):
                    key = key[len(prefix):]
            state[key] = value
        net = self.network.module if isinstance(self.network, DDP) else self.network
        if isinstance(net, OptimizedModule):
            net = net._orig_mod
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise InputError(f"init checkpoint {checkpoint_file} does not fit the network of "
                             f"{self.plans_manager.plans_name} {self.configuration_name}: {e}") from e
        self.print_to_log_file(f"Initialised all network weights from {checkpoint_file}")

    def _check_resume(self) -> None:
        """A continued training (``--c``): refuse a changed seed, record the resume, say whether it is exact.

        Raises:
            InputError: the training was started with another seed (per-epoch seeding would
                then mix two trainings).
        """
        previous = Path(self.output_folder) / RUN_CONFIG_FILE
        seed = self.run_config.seed
        before = (read_json(previous) or {"seed": seed}).get("seed")
        if before != seed:
            raise InputError(
                f"{self.output_folder}: this training was started with seed {before} and is continued (--c) with "
                f"seed {seed}; continue it with seed {before} (the plan's training.seed), or delete the folder to "
                "train from scratch")
        if self.local_rank == 0:
            record_resume(self.output_folder, self.current_epoch, seed)
        if seed is None:
            self.print_to_log_file(f"Continuing at epoch {self.current_epoch} without a training seed: the result "
                                   "will differ from an uninterrupted training (set training.seed for an exact resume)")
        else:
            self.print_to_log_file(f"Continuing at epoch {self.current_epoch}; every epoch is seeded from "
                                   f"(seed {seed}, epoch), so the result equals an uninterrupted training")

    def on_epoch_start(self):
        """nnU-Net's epoch start, after seeding every generator from (seed, epoch) when a seed is set."""
        if self.run_config.seed is not None:
            seed_epoch(self.run_config.seed, self.current_epoch)
            reset_channel_orders(self.dataloader_train)
        super().on_epoch_start()

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint, written atomically and with the true best EMA.

        A kill while ``torch.save`` writes would otherwise leave a truncated ``checkpoint_latest.pth``
        that ``--c`` cannot load. The temporary name (``.<name>.partial``) is one the driver removes
        as a stale temporary (:meth:`atso_nnunet.rundir.RunDir.remove_stale_temporaries`).
        """
        folder, name = os.path.split(filename)
        partial = os.path.join(folder, f".{name}.{os.getpid()}.partial")
        shown = self._best_ema
        if self._best_ema_kept is not _UNSET:
            self._best_ema = self._best_ema_kept
        try:
            super().save_checkpoint(partial)
        finally:
            self._best_ema = shown
        if os.path.isfile(partial):                 # nothing written: not rank 0, or checkpointing disabled
            os.replace(partial, filename)

    def _due(self, every: Optional[int]) -> bool:
        """Whether the epoch now ending is on a cadence of ``every`` epochs (the last epoch always is)."""
        epoch = self.current_epoch
        return every is None or (epoch + 1) % every == 0 or epoch >= self.num_epochs - 1

    def on_epoch_end(self):
        """nnU-Net's end of epoch, with the progress plot and the best-checkpoint check at the run
        config's cadence (``plot_every``, ``best_checkpoint_every``; unset: every epoch, as nnU-Net).

        Between cadence epochs the plot call is skipped, and the best EMA is shown to nnU-Net as
        unbeatable so that it neither saves ``checkpoint_best.pth`` nor records a new best; the
        EMA itself is logged every epoch as before. Nothing that training reads is touched.
        """
        plot = self._due(self.run_config.plot_every)
        best = self._due(self.run_config.best_checkpoint_every)
        if not plot:
            self.logger.plot_progress_png = _skip_plot          # an instance attribute hides the method
        best_ema = self._best_ema
        if not best:
            self._best_ema = math.inf                            # "new best?" answers no this epoch
            self._best_ema_kept = best_ema                       # what checkpoint_latest.pth records
        try:
            super().on_epoch_end()
        finally:
            if not plot:
                del self.logger.plot_progress_png
            if not best:
                self._best_ema = best_ema
                self._best_ema_kept = _UNSET

    def perform_actual_validation(self, save_probabilities: bool = False):
        if self.run_config.final_validation is False:
            self.print_to_log_file("Final validation skipped (run config final_validation=false)")
            return
        super().perform_actual_validation(save_probabilities)


_UNSET = object()


def _skip_plot(output_folder: str) -> None:
    """Stands in for ``MetaLogger.plot_progress_png`` on an epoch off the plot cadence."""
