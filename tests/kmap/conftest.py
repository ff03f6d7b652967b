"""Fixtures of the dass.kmap tests: small synthetic KMAP scans (session-scoped, a few MB).

Every scan is written by :func:`dass.kmap.synthetic.generate` into pytest's temporary folder;
tests that change files copy a scan first (:func:`copy_scan`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dass.kmap import synthetic

ISLAND = {"center": (2.0, 1.5), "radius": 1.1, "strain": 1.0e-3}


@pytest.fixture(scope="session")
def small_scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synthetic.KmapTruth]:
    """6 x 8 positions, 9 angles, 32 x 32 Poisson frames, ramps plus a strained island."""
    out = tmp_path_factory.mktemp("kmap-small")
    return synthetic.generate(out, shape=(6, 8), n_angles=9, island=ISLAND, seed=1)


@pytest.fixture(scope="session")
def exact_scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synthetic.KmapTruth]:
    """4 x 5 positions, 7 angles, noise-free float32 frames (the exact expected intensity)."""
    out = tmp_path_factory.mktemp("kmap-exact")
    return synthetic.generate(out, shape=(4, 5), n_angles=7, noise=False, island=None, seed=2)


def copy_scan(master: Path, dest: Path) -> Path:
    """Copy the folder of ``master`` (master + per-angle files) to ``dest``; return the copy."""
    shutil.copytree(master.parent, dest)
    return dest / master.name
