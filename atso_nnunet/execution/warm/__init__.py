"""Warm workers: processes that import nnU-Net once and run many of its commands (``pool``: the
driver side; ``worker``: the process itself)."""
