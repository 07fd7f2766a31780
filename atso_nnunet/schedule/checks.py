"""Helpers over a schedule: lookup, order, batches, and the fold-swap check (pure)."""
from __future__ import annotations

from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence, Set

from atso_nnunet.schedule.step import Step


def steps_by_id(steps: Iterable[Step]) -> Dict[str, Step]:
    """``{step.id: step}``.

    Raises:
        ValueError: two steps share an id.
    """
    out: Dict[str, Step] = {}
    for s in steps:
        if s.id in out:
            raise ValueError(f"duplicate step id {s.id!r}")
        out[s.id] = s
    return out


def order_problems(steps: Sequence[Step]) -> List[str]:
    """Steps whose inputs are unknown or not earlier in the list, and outputs produced twice."""
    problems, seen = [], set()
    outputs = Counter(o.key for s in steps for o in s.outputs)
    known = {s.id for s in steps}
    for s in steps:
        for i in s.inputs:
            if i not in known:
                problems.append(f"{s.id}: input {i} is no step")
            elif i not in seen:
                problems.append(f"{s.id}: input {i} comes later")
        seen.add(s.id)
    problems += [f"output {o} produced by {n} steps" for o, n in outputs.items() if n > 1]
    return problems


def topological_batches(steps: Sequence[Step]) -> List[List[Step]]:
    """Group steps into batches that can run concurrently.

    Batch i holds every step whose inputs all lie in batches before i (as early as possible);
    within a batch the order of ``steps`` is kept. For ATSO all K x views trainings of one
    generation land in one batch.

    Raises:
        ValueError: an input names no step, or the dependencies have a cycle.
    """
    by_id = steps_by_id(steps)
    for s in steps:
        unknown = [i for i in s.inputs if i not in by_id]
        if unknown:
            raise ValueError(f"step {s.id}: unknown input(s) {unknown}")
    done: Set[str] = set()
    remaining = list(steps)
    batches: List[List[Step]] = []
    while remaining:
        ready = [s for s in remaining if all(i in done for i in s.inputs)]
        if not ready:
            raise ValueError(f"dependency cycle among {[s.id for s in remaining]}")
        batches.append(ready)
        done.update(s.id for s in ready)
        ready_ids = {s.id for s in ready}
        remaining = [s for s in remaining if s.id not in ready_ids]
    return batches


def trained_cases(steps: Iterable[Step]) -> Dict[str, Set[str]]:
    """Reference cases each model has been trained on, including through its ``init_from`` chain."""
    direct: Dict[str, Set[str]] = {}
    parent: Dict[str, Optional[str]] = {}
    for s in steps:
        if s.kind == "train":
            direct.setdefault(s.model, set()).update(s.train_cases)
            if s.init_from is not None:
                parent[s.model] = s.init_from.name
    out: Dict[str, Set[str]] = {}
    for model in direct:
        cases, m, seen = set(), model, set()
        while m is not None and m not in seen:
            seen.add(m)
            cases |= direct.get(m, set())
            m = parent.get(m)
        out[model] = cases
    return out


def check_fold_swap(steps: Sequence[Step], reference_split: Sequence[Sequence[str]],
                    subset_training: str = "own") -> List[str]:
    """Violations of ATSO's fold swap (empty list: none).

    A violation is a pseudo-label fusion that uses a model's prediction for a case the model was
    trained on (directly or through its teacher), or a model of subset k whose training cases
    are not what ``subset_training`` says: ``"own"`` (model k trains on R_k, ATSO's
    ``disjoint`` subsets) or ``"others"`` (model k trains on R without R_k, ``crossfit``).
    STSO and self-learning label the cases they train on by design, so only ATSO passes.
    """
    trained = trained_cases(steps)
    problems = []
    K = len(reference_split)
    for s in steps:
        if s.kind == "train" and s.subset is not None:
            if not 0 < s.subset <= K:
                problems.append(f"{s.id}: subset {s.subset} outside 1..{K}")
                continue
            own = set(reference_split[s.subset - 1])
            expected = own if subset_training == "own" else {c for p in reference_split for c in p} - own
            if set(s.train_cases) != expected:
                problems.append(f"{s.id}: model {s.model} of subset {s.subset} trains on cases other than "
                                f"{'that subset' if subset_training == 'own' else 'the other subsets'}")
        if s.kind != "fuse" or s.role != "pseudo_label":
            continue
        for g in s.fuse_groups:
            for p in g.predictions:
                overlap = sorted(set(g.cases) & trained.get(p.model.name, set()))
                if overlap:
                    problems.append(f"{s.id}: model {p.model.name} pseudo-labels case(s) it was trained on: "
                                    f"{', '.join(overlap)}")
    return problems

