"""The README and docs/: every relative link resolves to a file of the repository (and an anchor to a heading of
it), and none points outside the repository."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of ``page``."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"(?m)^#+ (.+)$", page.read_text())}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_resolves_inside_the_repository(page):
    text = re.sub(r"(?s)```.*?```", "", page.read_text())
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.is_relative_to(ROOT), f"{page.name}: {target} points outside the repository"
        assert file.exists(), f"{page.name}: {target} does not exist"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page.name}: {target}: no heading '{anchor}' in {file.name}"
    assert "../shared" not in text, f"{page.name} points to ../shared, outside the repository"


def test_the_readme_is_short_and_sends_the_reference_to_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 250
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in readme, f"the README does not link {page.name}"
