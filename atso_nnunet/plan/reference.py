"""The plan reference (``docs/plan_reference.md``), generated from the plan's dataclasses.

Every key of a plan file, its type, its default and what it means, read from the fields of
:class:`~atso_nnunet.plan.schema.ExperimentPlan` and of each section's class and from the
``Attributes:`` of their docstrings, so the reference cannot drift from the code
(``tests/test_docs.py`` fails when the file is stale). Regenerate it with::

    python -m atso_nnunet.plan.reference docs/plan_reference.md
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from atso_nnunet.data.synthetic_config import SyntheticConfig
from atso_nnunet.execution.slurm.config import SlurmConfig
from atso_nnunet.limits import limits_text
from atso_nnunet.monitors.stability import StabilityFilter
from atso_nnunet.plan.fields import KEY_ORDER
from atso_nnunet.plan.schema import ExperimentPlan
from atso_nnunet.plan.sections import CaseRule, NetworkSection, SyntheticSpec, TrainingSection

# (heading, key path in the plan file, the section's class)
SECTIONS = (
    ("Network", "network", NetworkSection),
    ("Training", "training", TrainingSection),
    ("Synthetic sources", "synthetic.<source>", SyntheticSpec),
    ("Case rule", "case_rule", CaseRule),
    ("SLURM", "slurm", SlurmConfig),
    ("Stability filter", "stability_filter", StabilityFilter),
)


def field_docs(cls: type) -> Dict[str, str]:
    """``name -> text`` from the ``Attributes:`` section of ``cls``'s docstring and its bases'."""
    out: Dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        doc = inspect.getdoc(klass) if klass.__doc__ else ""
        if "Attributes:" not in doc:
            continue
        name: Optional[str] = None
        for line in doc.split("Attributes:", 1)[1].splitlines():
            if not line.strip():
                name = None if name is None else name
                continue
            m = re.match(r"^    (\w+(?:, \w+)*): ?(.*)$", line)
            if m:
                name = m.group(1)
                out[name] = m.group(2).strip()
            elif name is not None and line.startswith("        "):
                out[name] += " " + line.strip()
            elif not line.startswith(" "):
                break
    for names in [n for n in out if ", " in n]:  # "a, b: text" documents several fields
        for n in names.split(", "):
            out.setdefault(n, out[names])
    return out


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return "unset" if f.default is None else f"`{f.default!r}`"
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        return "empty" if not value or dataclasses.is_dataclass(value) else f"`{value!r}`"
    return "required"


def _table(cls: type, order: Optional[Sequence[str]] = None) -> List[str]:
    docs = {**field_docs(cls), **field_docs(SyntheticConfig)} if cls is SyntheticSpec else field_docs(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = [n for n in (order or fields) if n in fields]
    rows = ["| key | type | default | limits | meaning |", "|---|---|---|---|---|"]
    for n in names:
        f = fields[n]
        kind = str(f.type).replace("typing.", "").replace("|", "\\|")
        text = docs.get(n, "").replace("|", "\\|")
        rows.append(f"| `{n}` | `{kind}` | {_default(f)} | {limits_text(f.metadata)} | {text} |")
    return rows


def plan_reference() -> str:
    """The whole reference as Markdown."""
    lines = ["# Experiment plan reference", "",
             "Generated from the plan's dataclasses by `python -m atso_nnunet.plan.reference "
             "docs/plan_reference.md`; do not edit by hand. A plan is one JSON file "
             "(`plans/<dataset>/<split>.json`, or your own, see [the tutorial](tutorial.md)); every problem of "
             "a plan is listed at once when it is loaded, each starting with its field's path. Every number has "
             "limits (the column `limits`; floats must also be finite): generous for any real experiment, they "
             "refuse a typo (`1e12` epochs, an infinite learning rate) before any work.", "",
             "## Top level", "", *_table(ExperimentPlan, KEY_ORDER)]
    for heading, path, cls in SECTIONS:
        lines += ["", f"## {heading} (`{path}`)", "", *_table(cls)]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = plan_reference()
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
