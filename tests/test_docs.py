"""The user docs stay true: the plan reference is generated from the code, the architecture page
lists every module, and no doc names a file of the repository that does not exist."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from atso_nnunet.plan.reference import plan_reference

REPO = Path(__file__).resolve().parents[1]
# user docs (the lab notebook under docs/lab/ records what was true when it was written)
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FILE = re.compile(r"(?<![\w/.$-])((?:atso_nnunet|benchmarks|tools|tests|plans|docs)/[\w./-]*\w)")


def test_plan_reference_is_current():
    assert (REPO / "docs" / "plan_reference.md").read_text() == plan_reference(), \
        "regenerate it: python -m atso_nnunet.plan.reference docs/plan_reference.md"


def test_architecture_lists_every_module_and_only_modules_that_exist():
    listed = set(re.findall(r"`(atso_nnunet/[\w/]+\.py)`", (REPO / "docs" / "architecture.md").read_text()))
    modules = {str(p.relative_to(REPO)) for p in (REPO / "atso_nnunet").rglob("*.py")}
    assert sorted(modules - listed) == [], "add these modules to docs/architecture.md"
    assert sorted(listed - modules) == [], "docs/architecture.md lists modules that do not exist"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_file_a_doc_names_exists(doc):
    missing = sorted({m for m in FILE.findall(doc.read_text())
                      if "<" not in m and "*" not in m and not (REPO / m).exists()})
    assert missing == [], f"{doc.name} names files that do not exist"


def test_the_file_check_sees_a_missing_file():
    assert FILE.findall("see atso_nnunet/driver.py and `tools/make_paper_plans.py`.") == [
        "atso_nnunet/driver.py", "tools/make_paper_plans.py"]
