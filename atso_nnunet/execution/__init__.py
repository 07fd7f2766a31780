"""Executors: run a batch of independent jobs (trainings, predictions) and report their outcome.

``jobs`` (the job and the executor interface), ``local`` (subprocesses on this machine),
``warm/`` (warm nnU-Net workers), ``slurm/`` (SLURM through submitit), ``process`` (child-process
helpers) and ``options`` (:func:`~atso_nnunet.execution.options.make_executor`, the executor named
by the command line or a plan). Nothing here knows about plans, methods or nnU-Net's data.
"""
