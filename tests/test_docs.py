"""Docs move with code: the generated config reference, the README's promises, and links that
stay inside the repository."""

import ast
import re
from pathlib import Path

from dass.cli import config_reference

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_current(product_defaults):
    committed = (ROOT / "docs" / "config-reference.md").read_text()
    assert committed == config_reference(), "run `make reference` and commit docs/config-reference.md"


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = text.split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:] if line.strip()]
    assert commands == ["make up", "make test"]


def test_example_config_loads():
    from dass.config import load_config

    load_config(ROOT / "dass_config.example.py")


# ---------------------------------------------------------------------------- links

MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: a markdown link or image target: [text](target) / ![alt](target)
LINK_RE = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
#: the repository's own top-level folders (docs/, dass/, models/, ...)
TOP = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in {
    "node_modules", "build"} and not p.name.endswith(".egg-info"))
#: a file of the repository named in a code span or in running text: a path from a top-level
#: folder to a file with a suffix (``docs/metadata.md``), placeholders (``<stack>``) excluded
PATH_RE = re.compile(
    r"(?<![\w./~<{$-])((?:%s)(?:/[A-Za-z0-9_.-]+)+\.(?:md|py|yaml|yml|json|toml|ipynb|cfg|ini|txt))(?![\w/<])"
    % "|".join(re.escape(t) for t in TOP)
)
#: a path that goes up a folder, named anywhere
UP_RE = re.compile(r"(?<![\w.])((?:\.\./)+[^\s`'\")\]]+)")


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT)


def _resolves(target: str, base: Path) -> bool:
    """A relative target exists inside the repository, relative to ``base`` or to the root."""
    return any(_inside(p) and p.exists() for p in (base / target, ROOT / target))


def _broken_links(text: str, base: Path) -> list[str]:
    broken = []
    for target in LINK_RE.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (https:, mailto:) or an anchor of the same page
        path = target.split("#")[0]
        if not (_inside(base / path) and (base / path).exists()):
            broken.append(f"link ({target})")
    for target in UP_RE.findall(text):
        if not (_inside(base / target) and (base / target).exists()):
            broken.append(f"path {target} (outside the repository or missing)")
    for target in PATH_RE.findall(text):
        if not _resolves(target, base):
            broken.append(f"file {target}")
    return broken


def test_docs_link_only_to_files_inside_the_repository():
    broken = {}
    for doc in MARKDOWN:
        found = _broken_links(doc.read_text(encoding="utf-8"), doc.parent)
        if found:
            broken[str(doc.relative_to(ROOT))] = found
    assert broken == {}


def test_module_docstrings_name_only_files_inside_the_repository():
    broken = {}
    for module in sorted((ROOT / "dass").rglob("*.py")):
        docstring = ast.get_docstring(ast.parse(module.read_text(encoding="utf-8"))) or ""
        found = _broken_links(docstring, ROOT)  # a docstring names files from the repository root
        if found:
            broken[str(module.relative_to(ROOT))] = found
    assert broken == {}


def test_the_link_check_finds_what_it_must():
    text = ("see [the plan](../shared/ARCHITECTURE.md), `../shared/DOMAIN.md`, `docs/nothing.md`, "
            "[ok](docs/metadata.md), [web](https://example.org/x.md), `~/notebooks/sem/welcome.ipynb`, "
            "`<stack>/service/x.ipynb`, `dass/notebooks/sem/welcome.ipynb`")
    assert _broken_links(text, ROOT) == [
        "link (../shared/ARCHITECTURE.md)",
        "path ../shared/ARCHITECTURE.md (outside the repository or missing)",
        "path ../shared/DOMAIN.md (outside the repository or missing)",
        "file docs/nothing.md",
    ]
