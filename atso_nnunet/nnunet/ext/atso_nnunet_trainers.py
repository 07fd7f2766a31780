"""Entry point for nnU-Net's trainer lookup (``nnUNet_extTrainer=<this folder>``).

nnU-Net imports every module of an ``nnUNet_extTrainer`` folder as a top-level module and takes
the class whose name it looks for from it (``nnunetv2.utilities.find_objects``, 2.8.1). So this
folder has no ``__init__.py`` and holds only this module, which re-exports the plugin's trainers
(``atso_nnunet.nnunet.trainers.__all__``). Never point ``nnUNet_extTrainer`` at the package itself.
"""
import atso_nnunet.nnunet.trainers as _trainers

globals().update({_name: getattr(_trainers, _name) for _name in _trainers.__all__})
__all__ = list(_trainers.__all__)
