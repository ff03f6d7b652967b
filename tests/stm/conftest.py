"""Fixtures of the dass.stm tests: the two real FAST movies shipped in the pyfastspm wheel.

They are not committed: the first run downloads ``pyfastspm==1.0.6`` from the package registry
(``pip download``) and extracts ``examples/*.h5`` into ``.cache/stm-samples/`` (git-ignored) at
the repository root; later runs use that cache. Without network the tests that need them skip.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "stm-samples"
SAMPLES = ("20141003_24.h5", "F20190424_1.h5")
WHEEL_SPEC = "pyfastspm==1.0.6"


def _fetch_from_wheel(spec: str, members: dict[str, str], cache: Path, tmp: Path, what: str) -> None:
    """``pip download`` the wheel of ``spec`` into ``tmp`` and extract ``members`` (file name ->
    path inside the wheel) into ``cache``; skip the test with pip's last line when that fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", spec, "--no-deps", "--only-binary=:all:", "-d", str(tmp)],
        capture_output=True, text=True, timeout=300,
    )
    wheels = sorted(tmp.glob("*.whl"))
    if proc.returncode or not wheels:
        pytest.skip(f"cannot download {spec} for its sample {what} files: "
                    f"{((proc.stderr or proc.stdout).strip().splitlines() or ['no output'])[-1]}")
    cache.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as whl:
        for name, member in members.items():
            part = cache / (name + ".part")
            part.write_bytes(whl.read(member))
            part.replace(cache / name)  # atomic: a cut download never leaves a half file


@pytest.fixture(scope="session")
def fast_samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{file name: path}`` of the two real FAST files (read-only: copy before changing)."""
    if not all((CACHE / name).is_file() for name in SAMPLES):
        _fetch_from_wheel(WHEEL_SPEC, {name: f"examples/{name}" for name in SAMPLES}, CACHE,
                          tmp_path_factory.mktemp("pyfastspm-wheel"), "FAST")
    return {name: CACHE / name for name in SAMPLES}


@pytest.fixture(scope="session")
def old_fast(fast_samples: dict[str, Path]) -> Path:
    """20141003_24.h5: 105x105 px, old attribute spelling ``Acquisiton.``."""
    return fast_samples["20141003_24.h5"]


@pytest.fixture(scope="session")
def new_fast(fast_samples: dict[str, Path]) -> Path:
    """F20190424_1.h5: 196x196 px, file format 2.3, ``Acquisition.`` spelling."""
    return fast_samples["F20190424_1.h5"]


# ---------------------------------------------------------------------------------------------
# real Nanonis files (.sxm scans, a .dat bias spectrum) shipped in the pynxtools-spm wheel

NANONIS_CACHE = CACHE / "nanonis"
NANONIS_SPEC = "pynxtools-spm==0.4.1"
#: file name -> its path inside the pynxtools-spm 0.4.1 wheel
NANONIS_SAMPLES = {
    "Au_mica_2023_Y_A_diPAMY_20230512_058.sxm":
        "pynxtools_spm/nomad/example_uploads/stm/STMExampleWithCustomization/"
        "Au_mica_2023_Y_A_diPAMY_20230512_058.sxm",
    "A151216.123306-02602.sxm":
        "pynxtools_spm/nomad/example_uploads/afm/AFMExampleWithCustomization/"
        "A151216.123306-02602.sxm",
    "Bias-Spectroscopy00015_20230420.dat":
        "pynxtools_spm/nomad/example_uploads/sts/STSExampleWithCustomization/"
        "Bias-Spectroscopy00015_20230420.dat",
}


@pytest.fixture(scope="session")
def nanonis_samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{file name: path}`` of the real Nanonis files (read-only: copy before changing)."""
    if not all((NANONIS_CACHE / name).is_file() for name in NANONIS_SAMPLES):
        _fetch_from_wheel(NANONIS_SPEC, NANONIS_SAMPLES, NANONIS_CACHE,
                          tmp_path_factory.mktemp("pynxtools-spm-wheel"), "Nanonis")
    return {name: NANONIS_CACHE / name for name in NANONIS_SAMPLES}


@pytest.fixture(scope="session")
def stm_sxm(nanonis_samples: dict[str, Path]) -> Path:
    """An STM scan of Au on mica: 256x256 px, channels Z and Current, scanned down, 120°."""
    return nanonis_samples["Au_mica_2023_Y_A_diPAMY_20230512_058.sxm"]


@pytest.fixture(scope="session")
def afm_sxm(nanonis_samples: dict[str, Path]) -> Path:
    """An nc-AFM scan: 128x128 px, nine channels, scanned up."""
    return nanonis_samples["A151216.123306-02602.sxm"]


@pytest.fixture(scope="session")
def sts_dat(nanonis_samples: dict[str, Path]) -> Path:
    """A bias-spectroscopy .dat file: 2048 points."""
    return nanonis_samples["Bias-Spectroscopy00015_20230420.dat"]
