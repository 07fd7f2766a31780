"""Experiment plans shipped with atso_nnunet (installed as ``atso_nnunet.plans``)."""
