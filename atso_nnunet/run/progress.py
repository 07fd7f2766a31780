"""Time estimates for a running schedule: how long the current batch and the whole run still take.

The estimate is the simplest one that a person can check by hand: the mean duration of the
finished steps of the same kind (``train``, ``predict``, ``fuse`` ...) times the steps of that kind
still to run. nnU-Net jobs of a batch run ``parallel`` at a time; plugin steps (ingest, fuse,
evaluate) run one after the other in the driver. The predictions of R and E by one model and view
are one ``nnUNetv2_predict`` job, so they count once.

Example:
    >>> eta = Eta(steps, parallel=2)
    >>> eta.finished("g0/train/M0/axial", 31.0)
    >>> eta.describe("g0/train/M0/axial")
    'ETA batch 0m31s, run 14m20s (predict: no duration yet)'
"""
from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from typing import Callable, Dict, Hashable, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from atso_nnunet.schedule import Step, topological_batches

logger = logging.getLogger(__name__)

JOB_KINDS = ("train", "predict")  # run by the executor, ``parallel`` at a time


def work_unit(step: Step) -> Hashable:
    """What one duration is measured for: a prediction job per model and view, else the step."""
    if step.kind == "predict":
        return ("predict", step.model, step.view)
    return step.id


def format_duration(seconds: float) -> str:
    """``1h02m03s`` / ``2m03s``."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Eta:
    """Per-kind mean durations of finished steps -> remaining time of a batch and of the run.

    Args:
        steps: the whole schedule, in order.
        parallel: nnU-Net jobs that run at once (the executor's slots).
        done: whether a step was finished before this driver started (its duration is unknown
            unless given in ``previous``); default: none was.
        previous: step id -> seconds of steps finished earlier (e.g. read from their markers);
            they count towards the means.
    """

    def __init__(self, steps: Sequence[Step], parallel: int = 1, done: Optional[Callable[[str], bool]] = None,
                 previous: Optional[Mapping[str, float]] = None):
        if parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {parallel!r}")
        self.parallel = parallel
        self.steps = list(steps)
        self.by_id = {s.id: s for s in self.steps}
        self.batch_of: Dict[str, int] = {}
        self.batches: List[List[Step]] = [b for b in topological_batches(self.steps)]
        for i, batch in enumerate(self.batches):
            for s in batch:
                self.batch_of[s.id] = i
        self.finished_units: Set[Hashable] = set()
        self.durations: Dict[str, List[float]] = defaultdict(list)
        self._done_steps: Set[str] = {s.id for s in self.steps if done is not None and done(s.id)}
        for step_id, seconds in (previous or {}).items():
            if step_id in self.by_id:
                self.finished(step_id, seconds)

    def finished(self, step_id: str, seconds: float) -> None:
        """Record a finished step (a second step of the same prediction job is not counted again)."""
        step = self.by_id.get(step_id)
        if step is None:
            return
        self._done_steps.add(step_id)
        unit = work_unit(step)
        if unit in self.finished_units:
            return
        self.finished_units.add(unit)
        self.durations[step.kind].append(float(seconds))

    def mean(self, kind: str) -> Optional[float]:
        """Mean duration of the finished work units of ``kind`` (``None``: none finished yet)."""
        values = self.durations.get(kind)
        return sum(values) / len(values) if values else None

    def _remaining_units(self, steps: Iterable[Step]) -> Dict[str, int]:
        units: Dict[str, Set[Hashable]] = defaultdict(set)
        for s in steps:
            if s.id not in self._done_steps and s.kind != "report":
                unit = work_unit(s)
                if unit not in self.finished_units:
                    units[s.kind].add(unit)
        return {kind: len(u) for kind, u in units.items()}

    def remaining(self, steps: Iterable[Step]) -> Tuple[float, List[str]]:
        """Estimated seconds for the unfinished ``steps`` (one batch), and the kinds without a mean."""
        seconds, unknown = 0.0, []
        jobs = 0.0
        for kind, n in sorted(self._remaining_units(steps).items()):
            mean = self.mean(kind)
            if mean is None:
                unknown.append(kind)
                continue
            if kind in JOB_KINDS:
                jobs += n * mean
            else:
                seconds += n * mean
        if jobs:
            # waves of `parallel` jobs; a batch of 3 trainings on 2 slots takes 2 waves
            counts = self._remaining_units(steps)
            n_jobs = sum(counts.get(k, 0) for k in JOB_KINDS if self.mean(k) is not None)
            seconds += jobs / n_jobs * math.ceil(n_jobs / self.parallel)
        return seconds, unknown

    def batch_remaining(self, step_id: str) -> Tuple[float, List[str]]:
        """Remaining estimate of the batch holding ``step_id``."""
        return self.remaining(self.batches[self.batch_of[step_id]]) if step_id in self.batch_of else (0.0, [])

    def run_remaining(self) -> Tuple[float, List[str]]:
        """Remaining estimate of the whole run (batch by batch, so parallel slots count per batch)."""
        total, unknown = 0.0, []
        for batch in self.batches:
            seconds, kinds = self.remaining(batch)
            total += seconds
            unknown += [k for k in kinds if k not in unknown]
        return total, unknown

    def describe(self, step_id: str) -> str:
        """``ETA batch 1m02s, run 14m20s`` plus the kinds that have no duration yet (the ETA
        is then a lower bound)."""
        batch, unknown_b = self.batch_remaining(step_id)
        run, unknown = self.run_remaining()
        text = f"ETA batch {format_duration(batch)}{'+' if unknown_b else ''}, run {format_duration(run)}"
        if unknown:
            text += f"+ ({', '.join(unknown)}: no duration yet)"
        return text


class StepProgress:
    """One log line per finished step: count, duration, elapsed time, ETA, what comes next."""

    def __init__(self, steps: Sequence[Step], done: Callable[[str], bool], parallel: int = 1):
        self.total = len(steps)
        self.order = [s.id for s in steps]
        self.done = done
        self.t0 = time.time()
        self.eta = Eta(steps, parallel=parallel, done=done)

    def finished(self, step_id: str, seconds: float) -> None:
        self.eta.finished(step_id, seconds)
        n = sum(1 for s in self.order if self.done(s))
        nxt = next((s for s in self.order if not self.done(s)), None)
        logger.info("[%d/%d] %s done in %.1f s (elapsed %s; %s)%s", n, self.total, step_id, seconds,
                    format_duration(time.time() - self.t0), self.eta.describe(step_id), f"; next: {nxt}" if nxt else "")
