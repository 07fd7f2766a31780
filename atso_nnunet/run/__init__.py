"""One run of a method: the run folder and its markers, data preparation, preflight checks, the
driver (batch loop and resume), how each step kind runs, ground truth, progress and the dry run."""
