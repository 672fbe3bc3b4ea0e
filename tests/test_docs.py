"""The docs: the parameter reference is the schema's, and every relative link and #anchor of
the README and docs/ leads somewhere."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from initstudy.params.reference import OUT, reference

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "BENCHMARKS.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def test_the_parameter_reference_is_written_from_the_schema() -> None:
    expected = reference(yaml.safe_load((ROOT / "params.yaml").read_text()))
    assert OUT.read_text() == expected, "docs/parameters.md is stale: run `python -m initstudy.params.reference`"


def prose(text: str) -> str:
    """`text` without its fenced code blocks and inline code, where links are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, no punctuation but '-' and '_', spaces as '-'."""
    heading = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings, a repeated one numbered as GitHub numbers it."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M),
                              flags=re.M):
        base = slug(heading)
        found.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return found


def test_headings_slug_as_github_does() -> None:
    assert slug("Where can a network train? The phase diagram") == "where-can-a-network-train-the-phase-diagram"
    assert slug("`dvc exp show`, in 200 columns") == "dvc-exp-show-in-200-columns"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no {linked.relative_to(ROOT) if linked.is_relative_to(ROOT) else linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, "\n".join(broken)


def test_the_report_page_is_what_its_build_script_writes() -> None:
    """plots/vega/report.html outside its inlined libraries is build.py's PAGE, so that
    `make vega` (which rewrites it) keeps every change made to the page."""
    spec = importlib.util.spec_from_file_location("build", ROOT / "plots" / "vega" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    page = (ROOT / "plots" / "vega" / "report.html").read_text()
    versions = re.search(r"<!-- (.*?): inlined", page)[1]
    scripts = "\n".join(re.findall(r"<script>.*?</script>", page, flags=re.S))
    assert page == build.PAGE.format(versions=versions, scripts=scripts)
