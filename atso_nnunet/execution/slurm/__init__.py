"""SLURM backend through submitit: one job array per batch, requeue on time-out, reattach.

Modules: ``config`` (:class:`SlurmConfig`), ``env`` (the environment of sbatch and of the task),
``task`` (:class:`CommandJob`, what runs on the compute node), ``submission`` (sbatch parameters
and the rendered script), ``submitit_copy`` (two marked private submitit methods), ``executor``
(:class:`SlurmExecutor`, the batch state machine) and ``cluster`` (squeue/sacct queries).

How a batch runs:

- The jobs of a batch that are not done are submitted as ONE job array
  (``#SBATCH --array=0-<n-1>%<max_parallel>``). Each array task runs a :class:`CommandJob`,
  which runs the job's argument list as a subprocess and appends its output to ``Job.log_path``.
- Submitted ids are recorded in ``<log_folder>/<batch>/jobs.json`` (written atomically). A new
  driver process calling :meth:`SlurmExecutor.run_batch` with the same jobs reads it first:
  still-running tasks are reattached (not resubmitted), tasks that finished successfully are
  counted as done, failed or vanished ones are resubmitted (with ``resume_argv``), and jobs
  whose ``done_marker`` exists are skipped. Interrupting the driver leaves the cluster jobs running.
- Time-out / preemption: SLURM sends ``USR2`` ``signal_delay_s`` seconds before the end
  (``--signal=USR2@<delay>``). submitit's handler in the array task calls
  :meth:`CommandJob.checkpoint`, which terminates the running command (SIGTERM to its process
  group, SIGKILL after ``CommandJob.kill_grace_s``) and returns the same job switched to
  ``resume_argv``; submitit then requeues the task (``scontrol requeue``), at most
  ``SlurmConfig.max_requeues`` times for time-outs. nnU-Net has no save-on-signal: a training
  resumed with ``--c`` continues from its latest ``checkpoint_latest.pth`` (written every
  ``save_every`` = 50 epochs in nnunetv2), so a requeue loses at most that many epochs; a
  prediction simply runs again. The command itself ignores ``USR2`` (SLURM signals every process
  of the step), so only the submitit process decides what happens. A signal that comes once the
  job's work is done (its ``done_marker`` exists, e.g. a training's final checkpoint, or its
  command has returned) is ignored: the task lets the command finish and ends as done.
- A command that exits non-zero fails its array task; :meth:`SlurmExecutor.run_batch`
  resubmits it up to ``SlurmConfig.retries`` times (with ``resume_argv``), then raises
  :class:`~atso_nnunet.errors.StepFailedError` once every other job has finished.
- Job states come from the controller (``squeue``), with ``sacct`` only for jobs the controller
  no longer holds (:mod:`atso_nnunet.execution.slurm.cluster`): a pending, requeued or running
  task is never taken for a vanished one, with or without accounting. A job is resubmitted only
  when the cluster says it has ended; and never while ``squeue`` lists an active job of the same
  name: each array task is named after its step (``atso:<run>:<step>``), and a live task of this
  run found by that name is adopted instead of submitted again.
- Each task's output (submitit's log) is linked next to the step's log
  (``<step log>.slurm-<job id>.out``), and each attempt's header names the SLURM job and node.
- Environment: the job carries only the variables the run sets (``Job.env``: nnU-Net folders,
  ``ATSO_RUN_CONFIG``, a training's W&B run name, data-loader workers); everything else comes from
  where the task runs (``sbatch`` passes the driver's environment on by default).
  ``sbatch`` is called without the driver's own ``SLURM_*`` and GPU-visibility variables, so a
  driver that itself runs as a SLURM job does not hand its allocation to its children.

The compute nodes must see the same Python environment (``atso_nnunet`` importable with
``sys.executable``, or ``SlurmConfig.python``) and ``log_folder`` on a shared file system.
"""
from typing import Any


def __getattr__(name: str) -> Any:
    # Jobs submitted before the executor became a package were pickled as
    # ``atso_nnunet.execution.slurm.CommandJob``; a compute node unpickles them through this name.
    if name == "CommandJob":
        from atso_nnunet.execution.slurm.task import CommandJob

        return CommandJob
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
