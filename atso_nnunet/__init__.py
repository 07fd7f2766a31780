"""atso_nnunet: asynchronous teacher-student optimization (ATSO) for nnU-Net v2.

The package is organised by the method's parts:

- ``data``: synthetic CT generator, raw dataset layout, input checks, NIH/MSD converters
- ``views``: the three slicing views and their nnU-Net plans identifiers
- ``planning``: tri-view fingerprint / plan / preprocess through nnU-Net's API
- ``trainers``: nnU-Net trainer subclasses (found by nnU-Net through ``nnUNet_extTrainer``)
- ``pseudolabels``: ingestion of pseudo-label folders into each view's preprocessed space
- ``prediction``, ``fusion``, ``evaluation``: tri-view inference, majority vote, MONAI metrics
- ``plan``, ``schedule``, ``execution``, ``driver``, ``report``: the ATSO run itself
"""

__version__ = "0.1.0"
