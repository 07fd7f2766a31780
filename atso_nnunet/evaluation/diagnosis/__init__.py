"""Diagnosis of a finished (or partial) run folder: figures that say *why* a run scored as it did.

:func:`diagnose_run` reads an ordinary run folder (see :mod:`atso_nnunet.run.rundir`), the experiment
dataset in ``nnUNet_raw`` and nnU-Net's preprocessed data, and writes into ``out``:

- ``volumes.png``: foreground volume (mL) of every pseudo-label set ``R_g{t}`` per reference case
  and of every fused test prediction per test case, next to the ground-truth volume; empty counts
  and per-set totals, DSC, false-positive and false-negative volumes go to the summary.
- ``overlays_R.png`` / ``overlays_E.png``: image slices in the three array views (axial,
  coronal, sagittal) through the ground-truth organ's centre, ground-truth contour (green) and
  the label set's contour (red), for the first and the last label set (M0 and the last
  generation). A flip, transpose or shift shows as a red contour away from the green one.
- ``ingested.png``: what the students actually trained on: the ingested pseudo-labels in each
  view's preprocessed space over nnU-Net's preprocessed image, against the ground truth brought
  into that space by the same function (:func:`atso_nnunet.pseudolabels.ingest_case.seg_to_preprocessed`).
  The summary compares the DSC in the preprocessed space with the DSC in the original space
  (equal up to resampling when ingestion is right).
- ``training.png``: training loss, validation loss and nnU-Net's pseudo Dice per epoch of every
  model and view, parsed from nnU-Net's ``training_log_*.txt``.
- ``intensities.png``: histograms after nnU-Net's normalisation (the view's plans, applied with
  nnU-Net's own normalisation class to the raw images) of labeled (domain of S), reference and
  test images, inside the ground-truth organ and in a shell around it. The summary checks the
  preprocessed files against the raw images normalised by the plans.
- ``diagnosis.md``: the figures and tables of numbers.

Everything reads files only; nothing in the run folder is changed. One module per figure family
(``volumes``, ``overlays``, ``ingested``, ``training``, ``intensities``), what they read in
``rundata``, and :func:`diagnose_run` with the summary in ``diagnose``.
"""
from atso_nnunet.evaluation.diagnosis.diagnose import diagnose_run
from atso_nnunet.evaluation.diagnosis.rundata import RunData, load_run

__all__ = ["RunData", "diagnose_run", "load_run"]
