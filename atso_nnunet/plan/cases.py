"""Checks of a plan's case lists: ids, repeats, overlaps between sets, the reference split, may_be_absent."""
from __future__ import annotations

from collections import Counter
from typing import Any, List, Mapping, Optional, Sequence

from atso_nnunet.plan.fields import CASE_RE, SETS


def case_problems(v: Mapping[str, Any]) -> List[str]:
    out = []
    sets = {s: list(v[s]) for s in SETS if s in v}
    for s, ids in sets.items():
        bad = [c for c in ids if not CASE_RE.match(c)]
        if bad:
            out.append(f"{s}: malformed case id(s) {', '.join(map(repr, bad))} (letters, digits, "
                       "'_', '-', '.'; no folder, no file ending)")
        rep = sorted(c for c, n in Counter(ids).items() if n > 1)
        if rep:
            out.append(f"{s}: case(s) listed more than once: {', '.join(rep)}")
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = sorted(set(sets[a]) & set(sets[b]))
            if both:
                out.append(f"{a}/{b}: {len(both)} case(s) in both {a} and {b}: {', '.join(both)}")
    if "labeled" in sets and not sets["labeled"]:
        out.append("labeled: the labeled set S is empty; M0 needs labeled cases")
    optional = set(v.get("may_be_absent") or ())
    if optional:
        labeled = sorted(optional & set(sets.get("labeled", ())))
        if labeled:
            out.append(f"may_be_absent: labeled case(s) {', '.join(labeled)} cannot be optional: every labeled case "
                       "must exist (draw the labeled set from cases every release has)")
        stray = sorted(optional - set(sets.get("reference", ())) - set(sets.get("test", ())) - set(labeled))
        if stray:
            out.append(f"may_be_absent: case(s) {', '.join(stray)} are in neither reference nor test")
    if "reference" in sets:
        n_ref = len(set(sets["reference"]))
        k = v.get("subsets")
        if k is not None and k >= 1 and 0 < n_ref < k:
            out.append(f"reference: {n_ref} reference case(s) cannot fill {k} subsets; "
                       f"give at least {k} reference cases or lower subsets")
        if v.get("reference_split") is not None:
            out += _split_problems(v["reference_split"], sets["reference"], k)
    return out


def _split_problems(split: Sequence[Sequence[str]], reference: Sequence[str], k: Optional[int]) -> List[str]:
    out = []
    if k is not None and len(split) != k:
        out.append(f"reference_split: has {len(split)} subsets but subsets is {k}")
    for i, part in enumerate(split, 1):
        if not part:
            out.append(f"reference_split: subset {i} is empty")
    seen = Counter(c for part in split for c in part)
    rep = sorted(c for c, n in seen.items() if n > 1)
    if rep:
        out.append(f"reference_split: case(s) in more than one subset: {', '.join(rep)}")
    extra = sorted(set(seen) - set(reference))
    if extra:
        out.append(f"reference_split: case(s) not in reference: {', '.join(extra)}")
    missing = sorted(set(reference) - set(seen))
    if missing:
        out.append(f"reference_split: reference case(s) in no subset: {', '.join(missing)}")
    return out
