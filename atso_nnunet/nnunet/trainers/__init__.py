"""nnU-Net trainer subclasses of atso_nnunet (found by nnU-Net through ``nnUNet_extTrainer``).

- :class:`ATSOTrainer`: nnU-Net's trainer with a per-run schedule and an optional teacher init.
- :class:`ATSOSemiTrainer`: adds pseudo-labelled reference cases to the labeled set.
"""
from atso_nnunet.nnunet.trainers.base import ATSOTrainer
from atso_nnunet.nnunet.trainers.config import TrainerRunConfig
from atso_nnunet.nnunet.trainers.semi import ATSOSemiTrainer

__all__ = ["ATSOTrainer", "ATSOSemiTrainer", "TrainerRunConfig"]
