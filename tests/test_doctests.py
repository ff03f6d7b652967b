"""The examples in dass' docstrings run (``make test`` runs this file with the rest).

Only modules whose source holds an example (``>>>``) are imported, so collection stays cheap:
the torch, xsocs and pyfastspm modules are imported here only when they have examples, and a
module whose optional stack is not installed is skipped, naming it. Examples that need data or
services outside the test are marked ``# doctest: +SKIP`` where they are written.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dass"
#: the optional libraries whose absence skips a module (the stacks' extras)
OPTIONAL = {"torch", "torchvision", "xsocs", "xrayutilities", "silx", "pyfastspm", "nanonispy2",
            "access2theMatrix", "matplotlib", "ipywidgets", "kubespawner", "jupyterhub",
            "batchspawner"}


def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = _modules_with_examples()


def test_modules_with_examples_are_found():
    assert "dass.data.metadata" in MODULES and "dass.kmap.overview" in MODULES
    assert "dass.service.app" not in MODULES  # no examples there: not imported for doctests


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        if e.name and e.name.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs {e.name}, not installed")
        raise
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name) if t.examples]
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)
