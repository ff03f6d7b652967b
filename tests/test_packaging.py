"""An installed dass carries what it runs: the stacks' notebooks are inside the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_every_notebook(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if listed.returncode:
        pytest.skip("not a git checkout: cannot tell the tracked files")
    source = tmp_path / "src"  # a copy of the tracked files: the build writes build/ and *.egg-info
    for name in listed.stdout.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "w"), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = (tmp_path / "w").glob("dass-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        shipped = sorted(n for n in whl.namelist() if n.endswith(".ipynb"))
    expected = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "dass" / "notebooks").rglob("*.ipynb"))
    assert len(expected) == 10 and shipped == expected
