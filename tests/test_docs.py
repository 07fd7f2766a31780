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
FILE = re.compile(r"(?<![\w/.$-])((?:atso_nnunet|benchmarks|scripts|tests|plans|docs)/[\w./-]*\w)")


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


LINK = re.compile(r"\]\(([^)\s]+)\)")
# every page people read, the lab notebook and its figure pages included; not the published run
# records (docs/benchmarks/, docs/lab/records/), whose report_logs.md link to logs left out of them
PAGES = [REPO / "README.md", *sorted(p for p in (REPO / "docs").rglob("*.md")
                                    if not {"benchmarks", "records"} & set(p.relative_to(REPO / "docs").parts[:-1]))]


def broken_links(page: Path) -> list:
    """Relative markdown links and images of a page whose target does not exist."""
    targets = (m.split("#")[0] for m in LINK.findall(page.read_text()) if not re.match(r"^([a-z]+:|#)", m))
    return sorted({t for t in targets if t and not (page.parent / t).exists()})


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_and_image_of_a_page_resolves(page):
    assert broken_links(page) == [], f"{page.relative_to(REPO)}: broken links"


def test_the_link_check_sees_a_broken_image(tmp_path):
    (tmp_path / "here.png").write_bytes(b"")
    page = tmp_path / "page.md"
    page.write_text("![a](here.png) ![b](gone.png) [c](https://x.org/y) [d](#anchor) [e](here.png#z)")
    assert broken_links(page) == ["gone.png"]


def test_the_file_check_sees_a_missing_file():
    assert FILE.findall("see atso_nnunet/driver.py and `scripts/make_paper_plans.py`.") == [
        "atso_nnunet/driver.py", "scripts/make_paper_plans.py"]
