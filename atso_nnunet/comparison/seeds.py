"""What each seed of a comparison runs: its labeled draw from the plan's pool, its plan, and the
generation 0 (M0) it shares with the other methods of the seed (adopted by content key; see
:mod:`atso_nnunet.comparison.run`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from atso_nnunet.errors import InputError
from atso_nnunet.io import read_json

logger = logging.getLogger(__name__)

# what never changes generation 0: the method's own settings
_NOT_G0 = ("name", "note", "method", "generations")


def labeled_draw(pool: Sequence[str], n: int, seed: int) -> List[str]:
    """The labeled cases of seed ``seed``: ``n`` of ``pool``, drawn with ``default_rng(seed)``."""
    pool = sorted(pool)
    if not 0 < n <= len(pool):
        raise InputError(f"cannot draw {n} labeled case(s) from a pool of {len(pool)}")
    return sorted(np.random.default_rng(seed).choice(pool, n, replace=False).tolist())


def labeled_pool(plan, case_files) -> List[str]:
    """The cases a seed may draw its labeled set from.

    Args:
        plan: the comparison's plan.
        case_files: ``{case: CaseFiles}`` of at least the plan's labeled and reference cases
            (:func:`atso_nnunet.data.materialize.find_cases`).

    Returns:
        The plan's labeled cases plus every reference case that has ground truth and lives in a
        source one of the labeled cases lives in (sorted). A reference case from another domain
        (transfer) or without a label never becomes labeled.
    """
    labeled_sources = {case_files[c].source for c in plan.labeled}
    extra = [c for c in plan.reference
             if case_files[c].label is not None and case_files[c].source in labeled_sources]
    return sorted([*plan.labeled, *extra])


def plan_for_seed(plan, seed: int, method: str, generations: Optional[int] = None,
                  views: Optional[Sequence[str]] = None, pool: Optional[Sequence[str]] = None):
    """The plan of one run of the comparison (see the module docstring).

    ``pool``: the cases S is drawn from (:func:`labeled_pool`); default the plan's S + R (a plan
    with one source whose reference cases all have labels).
    """
    from atso_nnunet.methods import get_method
    from atso_nnunet.plan import plan_from_dict

    pool = list(pool) if pool is not None else [*plan.labeled, *plan.reference]
    unknown = sorted(set(pool) - set(plan.labeled) - set(plan.reference))
    if unknown:
        raise InputError(f"labeled pool has cases outside the plan's labeled and reference sets: {unknown}")
    labeled = labeled_draw(pool, len(plan.labeled), seed)
    m = get_method(method)
    gens = plan.generations if generations is None else generations
    gens = min(max(gens, m.min_generations), m.max_generations if m.max_generations is not None else gens)
    data = plan.to_dict()
    training = dict(data.get("training") or {})
    training["seed"] = seed
    data.update({
        "name": f"{plan.name} [seed {seed}, {method}]",
        "labeled": labeled,
        "reference": sorted((set(plan.labeled) | set(plan.reference)) - set(labeled)),
        "dataset_id": plan.dataset_id + seed,
        "dataset_name": f"{plan.dataset_name}S{seed}",
        "seed": seed,
        "method": method,
        "generations": gens,
        "training": training,
        "reference_split": None,
    })
    if views is not None:
        data["views"] = list(views)
    return plan_from_dict(data, origin=f"comparison plan (seed {seed}, method {method})")


def generation_zero_key(plan) -> str:
    """Content key of everything generation 0 depends on (the resolved plan minus the method's own)."""
    from atso_nnunet.plan import resolved

    data = {k: v for k, v in resolved(plan).items() if k not in _NOT_G0}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _link(target: Path, source: Path) -> None:
    if target.exists() or target.is_symlink():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(os.path.relpath(source, target.parent))


def adopt_generation_zero(shared_ctx, ctx, steps) -> int:
    """Let ``ctx``'s run use the finished generation 0 of ``shared_ctx``'s run (same content key).

    Returns:
        The number of generation-0 steps adopted (0 when the keys differ or nothing is finished).
    """
    from atso_nnunet.schedule import Model

    key_file = "g0_key.json"
    key = generation_zero_key(ctx.plan)
    shared_key = (read_json(shared_ctx.run.root / key_file) or {}).get("key")
    if shared_key != key:
        logger.info("generation 0 of %s not shared (content key %s vs %s)", ctx.run.root, key, shared_key)
        return 0
    adopted = 0
    for step in steps:
        if step.generation != 0 or step.kind == "report" or ctx.run.is_done(step.id):
            continue
        if not shared_ctx.run.is_done(step.id):
            continue
        for art in step.outputs:
            if isinstance(art, Model):
                _link(ctx.run.results_root(art.name).parent, shared_ctx.run.results_root(art.name).parent)
            else:
                src, dst = shared_ctx.path(art), ctx.path(art)
                _link(dst, src)
                if dst.suffix == ".json":
                    _link(dst.with_suffix(".csv"), src.with_suffix(".csv"))
        marker = read_json(shared_ctx.run.marker(step.id)) or {}
        ctx.run.mark_done(step.id, 0.0, shared_from=str(shared_ctx.run.root), original=marker)
        adopted += 1
    return adopted
