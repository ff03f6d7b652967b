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


# An independent scan as a beamline user would bring it (issue 14): another material,
# reflection and energy than the demo, a non-square detector with an off-centre direct beam,
# different channels per degree on each axis, a 2-D strain field, pitch and roll, Poisson
# noise, dead pixels, positions without a Bragg peak and one position with a zero monitor.
BEAMLINE = {
    "shape": (6, 9), "n_angles": 9, "eta_step": 0.03, "frame_shape": (24, 40),
    "energy_kev": 9.0, "hkl": (0, 0, 4), "lattice_a": 5.658,  # Ge 004 at 9 keV
    "strain": (2e-4, 6e-4, -4e-4), "tilt": ((0.0, 0.015, -0.01), (0.005, -0.01, 0.02)),
    "center_chan": (8.0, 30.0), "pixel_size_m": (55e-6, 75e-6), "dead_pixels": 6,
    "no_peak": (5,), "empty": (22,), "zero_monitor": (40,), "peak_counts": 3000.0,
    "background": 1.0, "seed": 4,
}


@pytest.fixture(scope="session")
def beamline_scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synthetic.KmapTruth]:
    out = tmp_path_factory.mktemp("kmap-beamline")
    return synthetic.generate(out, **BEAMLINE)
