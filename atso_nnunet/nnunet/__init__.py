"""Every use of nnU-Net v2: view planning, the network override, command lines, prediction, the
training-log parser, the trainer subclasses and the ``nnUNet_extTrainer`` folder (``ext/``).

An nnU-Net upgrade touches this sub-package only.
"""
