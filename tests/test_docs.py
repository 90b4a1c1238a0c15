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


def documented_commands(prefix: str) -> list[tuple[str, str]]:
    """Every command of the README and docs/ that starts with ``prefix`` (after ``.venv/bin/`` or not) and names real
    values (no NAME, [...] or ... placeholders), with its continuation lines joined: (page, command)."""
    found = []
    for page in PAGES:
        text = page.read_text().replace("\\\n", " ")
        for line in re.findall(rf"(?:`|^\s*)(?:\.venv/bin/)?({re.escape(prefix)}[^`\n#]*)", text, flags=re.M):
            command = " ".join(line.split())
            if not re.search(r"\bNAME\b|\bDIR\b|\bMETHOD\b|\[|\.\.\.|<|HOST", command):
                found.append((page.name, command))
    return found


COMMANDS = documented_commands("python -m autoemb_core ")


@pytest.mark.parametrize("page, command", COMMANDS, ids=[c for _, c in COMMANDS])
def test_every_documented_command_parses_and_resolves_as_written(page, command):
    """Each ``python -m autoemb_core`` command as the docs write it: its flags exist, and the settings it names
    resolve to a valid Config (datasets, methods, tasks, regimes), without running anything."""
    import shlex

    from autoemb_core.__main__ import _grid, build_parser, check_regimes, config_from_args
    args = build_parser().parse_args(shlex.split(command)[3:])
    if args.command in ("download",):
        return
    base = config_from_args(args)
    if hasattr(args, "methods"):
        _grid(base, args.methods, args.tasks)
    if getattr(args, "regimes", None):
        check_regimes(args.regimes)


PAPERMILL = sorted(set(documented_commands("papermill notebooks/")))


@pytest.mark.parametrize("page, command", PAPERMILL, ids=[c for _, c in PAPERMILL])
def test_every_documented_papermill_command_names_a_notebook_and_its_parameters(page, command):
    import shlex

    from autoemb_core.nbparams import NOTEBOOKS
    from autoemb_core.config import SETTINGS
    words = shlex.split(command)
    notebook = ROOT / words[1]
    assert notebook.is_file(), f"{page}: {words[1]} does not exist"
    spec = NOTEBOOKS[notebook.stem.split("_", 1)[1]]
    names = [words[i + 1] for i, w in enumerate(words) if w in ("-p", "-r")]
    for name in names:
        assert name in spec or name in SETTINGS, f"{page}: {command}: {name} is not a parameter of {notebook.name}"
    for i, w in enumerate(words):
        if w == "-f":
            assert (ROOT / words[i + 1]).is_file(), f"{page}: {words[i + 1]} does not exist"
