"""nnU-Net trainer subclasses of atso_nnunet.

- :class:`ATSOTrainer` (``base``): nnU-Net's trainer with the run's schedule and an optional
  initialisation from a checkpoint, read from the environment (``trainers.config``).
- ``ATSOSemiTrainer`` (``semi``): adds pseudo-labelled cases.

nnU-Net finds them by name through ``nnUNet_extTrainer`` (see ``atso_nnunet/nnunet_ext``);
in-process code imports them from here.
"""
import importlib.util

from atso_nnunet.trainers.base import ATSOTrainer
from atso_nnunet.trainers.config import TrainerRunConfig

__all__ = ["ATSOTrainer", "TrainerRunConfig"]

# semi.py is written in parallel; import it only once it exists (a plain import later). Errors
# inside an existing semi.py are not hidden.
if importlib.util.find_spec(f"{__name__}.semi") is not None:
    from atso_nnunet.trainers.semi import ATSOSemiTrainer  # noqa: F401

    __all__.append("ATSOSemiTrainer")
