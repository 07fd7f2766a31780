"""What the SLURM cluster says: job states, job names, partitions (``squeue``, ``sacct``, ``sinfo``).

The executor asks the controller, not only the accounting database: many small sites run SLURM
without ``slurmdbd``, where ``sacct`` fails. ``squeue --states=all`` lists every job the controller
holds (pending, requeued, running, and ended ones for ``MinJobAge``, 300 s by default), so

- a job ``squeue`` lists as pending or running is alive, whatever ``sacct`` says;
- a job ``squeue`` does not list has ended: its state comes from ``sacct`` if accounting works,
  else from submitit's result file;
- when ``squeue`` itself fails (controller down, time-out), nothing is concluded: the job is
  taken as alive and asked about again later. A job is never resubmitted because a query failed.

Example:
    >>> states = query_states(["15_0", "15_1"])   # {"15_0": "RUNNING", "15_1": "PENDING"}
    >>> check_partition(SlurmConfig(partition="gpu", gpus_per_job=1))  # raises InputError if unusable
"""
from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from atso_nnunet.errors import InputError

logger = logging.getLogger(__name__)

# States of a job that has not ended (squeue / sacct spelling).
ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "COMPLETING",
                           "CONFIGURING", "RESIZING", "SUSPENDED", "PREEMPTED", "READY", "SIGNALING",
                           "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"})

# SLURM keeps job names up to 1024 characters in recent versions; squeue shows 8 by default and
# sacct 10. A name stays well below the limit and keeps its end (the step) when shortened.
MAX_JOB_NAME = 100

_TIMEOUT_S = 60


class ClusterQueryError(RuntimeError):
    """A SLURM command could not be run or failed (the cluster's answer is unknown)."""


def _run(argv: Sequence[str], timeout: float = _TIMEOUT_S) -> Tuple[int, str, str]:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ClusterQueryError(f"{argv[0]}: {e}") from e
    return proc.returncode, proc.stdout, proc.stderr


def job_name(prefix: str, step: str) -> str:
    """The SLURM job name of one step: ``<prefix>:<step>``, at most :data:`MAX_JOB_NAME` characters.

    Args:
        prefix: e.g. ``atso:Dataset991_TinyExp__atso`` (the run).
        step: the step, e.g. ``g1/train/h1/axial``.

    A long name keeps the step whole and shortens the prefix from its start (``...``).
    Characters SLURM or a shell handles badly (whitespace, quotes) become ``_``.
    """
    clean = re.sub(r"[\s'\"`$\\]", "_", f"{prefix}:{step}" if prefix else step)
    if len(clean) <= MAX_JOB_NAME:
        return clean
    return "..." + clean[-(MAX_JOB_NAME - 3):]


def base_job_id(job_id: str) -> str:
    """``"15"`` for ``"15_3"`` (an array task) or ``"15"``."""
    return str(job_id).split("_", 1)[0]


def parse_squeue(text: str) -> Dict[str, Tuple[str, str]]:
    """``{job_id: (STATE, name)}`` from ``squeue --format=%i|%T|%j`` lines."""
    out: Dict[str, Tuple[str, str]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 2)
        if len(parts) == 3 and parts[0]:
            out[parts[0]] = (parts[1].strip().upper(), parts[2])
    return out


def squeue_jobs(job_ids: Sequence[str] = (), names: Sequence[str] = ()) -> Dict[str, Tuple[str, str]]:
    """Jobs the controller holds, by array task id: ``{"15_0": ("RUNNING", name), ...}``.

    Args:
        job_ids: ids (``15`` or ``15_3``) whose arrays to list, ended ones included.
        names: or: job names to list (active jobs only).

    Raises:
        ClusterQueryError: squeue failed (for another reason than ids the controller forgot).
    """
    argv = ["squeue", "--array", "--noheader", "--format=%i|%T|%j"]
    if job_ids:
        argv += ["--states=all", "--jobs=" + ",".join(sorted({base_job_id(j) for j in job_ids}))]
    if names:
        argv += ["--name=" + ",".join(sorted(set(names)))]
    rc, out, err = _run(argv)
    if rc != 0:
        if "Invalid job id" in err:  # a single id the controller no longer holds
            return {}
        raise ClusterQueryError(f"squeue failed (exit {rc}): {err.strip()}")
    return parse_squeue(out)


def parse_sacct(text: str) -> Dict[str, str]:
    """``{job_id: STATE}`` from ``sacct --parsable2 --noheader --format=JobID,State`` lines
    (job steps such as ``15_0.batch`` are left out; ``CANCELLED by 0`` becomes ``CANCELLED``)."""
    out: Dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0] and "." not in parts[0]:
            out[parts[0]] = (parts[1].split() or ["UNKNOWN"])[0].upper()
    return out


def sacct_states(job_ids: Sequence[str]) -> Optional[Dict[str, str]]:
    """States from the accounting database, or ``None`` where ``sacct`` fails (no accounting)."""
    if not job_ids:
        return {}
    argv = ["sacct", "--parsable2", "--noheader", "--allocations", "--format=JobID,State",
            "--jobs=" + ",".join(sorted({base_job_id(j) for j in job_ids}))]
    try:
        rc, out, err = _run(argv)
    except ClusterQueryError as e:
        logger.debug("sacct unavailable: %s", e)
        return None
    if rc != 0:
        logger.debug("sacct failed (exit %d): %s", rc, err.strip())
        return None
    return parse_sacct(out)


@dataclass(frozen=True)
class JobState:
    """What the cluster says about one job.

    Attributes:
        state: SLURM state (``RUNNING``, ``PENDING``, ``COMPLETED``, ...) or ``UNKNOWN``: the
            controller no longer holds it and accounting does not know it either.
        active: whether it may still run (pending, requeued, running ...).
        source: ``squeue``, ``sacct`` or ``none``.
    """

    state: str
    active: bool
    source: str


def query_states(job_ids: Sequence[str]) -> Dict[str, JobState]:
    """The state of each job of ``job_ids`` (one ``squeue`` call, one ``sacct`` call at most).

    Raises:
        ClusterQueryError: ``squeue`` failed: the caller must not conclude anything.
    """
    ids = [str(j) for j in job_ids]
    if not ids:
        return {}
    listed = squeue_jobs(job_ids=ids)
    out: Dict[str, JobState] = {}
    missing = []
    for j in ids:
        if j in listed:
            state = listed[j][0]
            out[j] = JobState(state, state in ACTIVE_STATES, "squeue")
        else:
            missing.append(j)
    if missing:
        accounted = sacct_states(missing) or {}
        for j in missing:
            if j in accounted:
                # The controller does not hold it, so it is not running whatever sacct was told last.
                out[j] = JobState(accounted[j], False, "sacct")
            else:
                out[j] = JobState("UNKNOWN", False, "none")
    return out


# ---------------------------------------------------------------------------------------------
# partitions


@dataclass(frozen=True)
class Partition:
    """A partition as ``sinfo`` shows it (one line per partition and node kind)."""

    name: str
    default: bool
    available: bool
    gres: Tuple[str, ...]  # per node kind, e.g. ("gpu:4", "(null)")
    max_cpus: int
    max_mem_mb: int


def parse_sinfo(text: str) -> Dict[str, Partition]:
    """Partitions from ``sinfo --noheader --format=%P|%a|%G|%c|%m`` lines."""
    raw: Dict[str, dict] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 5 or not parts[0]:
            continue
        name, avail, gres, cpus, mem = parts
        default = name.endswith("*")
        name = name.rstrip("*")
        rec = raw.setdefault(name, {"default": default, "available": False, "gres": [], "cpus": 0, "mem": 0})
        rec["default"] = rec["default"] or default
        rec["available"] = rec["available"] or avail.strip() == "up"
        rec["gres"].append(gres.strip())
        rec["cpus"] = max(rec["cpus"], _leading_int(cpus))
        rec["mem"] = max(rec["mem"], _leading_int(mem))
    return {n: Partition(n, r["default"], r["available"], tuple(r["gres"]), r["cpus"], r["mem"])
            for n, r in raw.items()}


def _leading_int(text: str) -> int:
    match = re.match(r"\s*(\d+)", text)
    return int(match.group(1)) if match else 0


def partition_has_gpus(partition: Partition) -> bool:
    """Whether some node kind of the partition lists a ``gpu`` generic resource."""
    return any("gpu" in g.lower() for g in partition.gres if g and g != "(null)")


def partitions() -> Dict[str, Partition]:
    """The cluster's partitions (``sinfo``).

    Raises:
        InputError: ``sinfo`` is missing or fails (not on a SLURM login node?).
    """
    try:
        rc, out, err = _run(["sinfo", "--noheader", "--format=%P|%a|%G|%c|%m"])
    except ClusterQueryError as e:
        raise InputError(f"executor slurm: cannot ask the cluster for its partitions ({e}); run the driver "
                         "where sinfo and sbatch work (a login node), or use --executor local") from None
    if rc != 0:
        raise InputError(f"executor slurm: sinfo failed (exit {rc}): {err.strip()}; is the SLURM controller up?")
    return parse_sinfo(out)


def check_resources(config, known: Mapping[str, Partition]) -> Partition:
    """Refuse, before anything is submitted, resources the cluster can never give.

    Args:
        config: a :class:`~atso_nnunet.execution.slurm.config.SlurmConfig`.
        known: the cluster's partitions (:func:`partitions`).

    Returns:
        The partition the jobs will run in.

    Raises:
        InputError: unknown partition, no default partition, GPUs asked on a partition whose nodes
            have none, more CPUs or memory per job than any node of the partition has.
    """
    names = ", ".join(sorted(known)) or "none"
    if config.partition is not None:
        part = known.get(config.partition)
        if part is None:
            raise InputError(f"--slurm-partition {config.partition}: sinfo knows no such partition "
                             f"(partitions: {names})")
    else:
        defaults = [p for p in known.values() if p.default]
        if not defaults:
            raise InputError(f"the cluster has no default partition: choose one with --slurm-partition "
                             f"(partitions: {names})")
        part = defaults[0]
    problems: List[str] = []
    if config.gpus_per_job > 0 and not partition_has_gpus(part):
        problems.append(f"{config.gpus_per_job} GPU(s) per job asked, but the nodes of partition {part.name} "
                        f"have none (sinfo GRES: {', '.join(part.gres)}); use --slurm-gpus-per-job 0 "
                        "(nnU-Net then trains on the CPU) or a GPU partition")
    if part.max_cpus and config.cpus_per_task > part.max_cpus:
        problems.append(f"--slurm-cpus {config.cpus_per_task}: the largest node of partition {part.name} "
                        f"has {part.max_cpus} CPUs")
    if part.max_mem_mb and config.mem_gb * 1024 > part.max_mem_mb:
        problems.append(f"--slurm-mem-gb {config.mem_gb:g}: the largest node of partition {part.name} has "
                        f"{part.max_mem_mb} MB")
    if problems:
        raise InputError("SLURM resources that cannot work:\n  - " + "\n  - ".join(problems))
    return part


# slurmctld looks at time limits every 30 s and sends the --signal warning once the end is within
# the delay plus that period, so a task may be warned up to 60 s before ``limit - delay``.
SIGNAL_EARLY_S = 60


def earliest_warning_s(config) -> int:
    """Seconds after its start at which a task may already get the USR2 warning (can be <= 0)."""
    return config.time_min * 60 - config.signal_delay_s - SIGNAL_EARLY_S


def rename_jobs(names: Mapping[str, str]) -> List[str]:
    """Give array tasks their own names (``scontrol update JobId=15_0 JobName=...``).

    Returns:
        The ids that could not be renamed (logged; the job still runs under the array's name).
    """
    failed = []
    for job_id, name in names.items():
        try:
            rc, _, err = _run(["scontrol", "update", f"JobId={job_id}", f"JobName={name}"])
        except ClusterQueryError as e:
            rc, err = -1, str(e)
        if rc != 0:
            logger.warning("SLURM job %s: could not set its name to %s (%s)", job_id, name, err.strip())
            failed.append(job_id)
    return failed


def job_stdout(job_id: str) -> Optional[str]:
    """The ``StdOut`` path SLURM writes the job's output to (``scontrol show job``), if known."""
    try:
        rc, out, _ = _run(["scontrol", "show", "job", "--oneliner", str(job_id)])
    except ClusterQueryError:
        return None
    match = re.search(r"\bStdOut=(\S+)", out) if rc == 0 else None
    return match.group(1) if match else None
