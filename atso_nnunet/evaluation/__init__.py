"""Evaluation of a run: MONAI metrics and label-free monitors, the run report and the diagnosis."""
