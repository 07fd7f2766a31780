"""``ATSOTrainer``: nnU-Net's trainer with a per-run schedule and an optional teacher init.

The settings come from :class:`~atso_nnunet.nnunet.trainers.config.TrainerRunConfig.from_env` (the
trainer constructor is fixed by nnU-Net). Everything else is nnU-Net's ``nnUNetTrainer``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel as DDP

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from atso_nnunet.errors import InputError
from atso_nnunet.plan.training import training_fields
from atso_nnunet.nnunet.trainers.config import TrainerRunConfig

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
            import random

            import numpy as np

            random.seed(self.run_config.seed)
            np.random.seed(self.run_config.seed)
            torch.manual_seed(self.run_config.seed)
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
        try:
            super().on_epoch_end()
        finally:
            if not plot:
                del self.logger.plot_progress_png
            if not best:
                self._best_ema = best_ema

    def perform_actual_validation(self, save_probabilities: bool = False):
        if self.run_config.final_validation is False:
            self.print_to_log_file("Final validation skipped (run config final_validation=false)")
            return
        super().perform_actual_validation(save_probabilities)


def _skip_plot(output_folder: str) -> None:
    """Stands in for ``MetaLogger.plot_progress_png`` on an epoch off the plot cadence."""
