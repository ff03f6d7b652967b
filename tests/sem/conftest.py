"""Fixtures: real Zeiss and FEI SEM TIFFs from the hyperspy 1.7.6 distribution.

The files are not committed. The session fixtures look in
``<repo>/.cache/sem-samples/`` and otherwise download ``hyperspy==1.7.6``
with pip (wheel first, sdist as fallback) and extract
``hyperspy/tests/io/tiff_files/tiff_Zeiss_SEM.zip`` and ``tiff_FEI_Helios.zip`` into that
cache. When the download is impossible (no network, no registry) the tests that need the
files skip with the reason.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "sem-samples"
ARTIFACTS = REPO / "test-artifacts"
ZIP_MEMBERS = ("hyperspy/tests/io/tiff_files/tiff_Zeiss_SEM.zip", "hyperspy/tests/io/tiff_files/tiff_FEI_Helios.zip")
NAMES = ("test_tiff_Zeiss_SEM_1k.tif", "test_tiff_Zeiss_SEM_512pix.tif")
FEI_NAMES = ("FEI-Helios-Ebeam-8bits.tif", "FEI-Helios-Ebeam-16bits.tif", "FEI-Helios-navcam.tif")


def _extract_inner(zip_bytes: bytes) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as inner:
        for name in inner.namelist():
            if name.endswith(".tif"):
                (CACHE / Path(name).name).write_bytes(inner.read(name))


def _download(tmp: Path) -> str | None:
    """Download hyperspy 1.7.6 and extract the Zeiss and FEI zips; return an error or None."""
    errors = []
    for extra in (["--only-binary", ":all:"], ["--no-binary", ":all:"]):
        cmd = [sys.executable, "-m", "pip", "download", "hyperspy==1.7.6", "--no-deps",
               "--disable-pip-version-check", "-d", str(tmp), *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            errors.append(proc.stderr.strip().splitlines()[-1:] or ["pip failed"])
            continue
        found = 0
        for dist in tmp.iterdir():
            if dist.suffix == ".whl":
                with zipfile.ZipFile(dist) as whl:
                    for zip_member in ZIP_MEMBERS:
                        if zip_member in whl.namelist():
                            _extract_inner(whl.read(zip_member))
                            found += 1
            elif dist.name.endswith(".tar.gz"):
                with tarfile.open(dist) as sdist:
                    for member in sdist.getmembers():
                        if member.name.endswith(ZIP_MEMBERS):
                            _extract_inner(sdist.extractfile(member).read())
                            found += 1
        if found == len(ZIP_MEMBERS):
            return None
        errors.append([f"{', '.join(ZIP_MEMBERS)} not all found in the download"])
    return "; ".join(e[0] for e in errors)


def _samples(names: tuple[str, ...], what: str) -> None:
    if not all((CACHE / n).exists() for n in names):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                error = _download(Path(tmp))
            except (OSError, subprocess.SubprocessError) as exc:
                error = str(exc)
        if error or not all((CACHE / n).exists() for n in names):
            pytest.skip(f"real {what} SEM samples unavailable (pip download hyperspy==1.7.6 failed: {error})")


@pytest.fixture(scope="session")
def zeiss_samples() -> dict[str, Path]:
    """Paths of the two real Zeiss TIFFs, keyed '1k' and '512'."""
    _samples(NAMES, "Zeiss")
    return {"1k": CACHE / NAMES[0], "512": CACHE / NAMES[1]}


@pytest.fixture(scope="session")
def fei_samples() -> dict[str, Path]:
    """Paths of three real FEI Helios TIFFs, keyed '8bit', '16bit' (the same E-beam image) and 'navcam'."""
    _samples(NAMES + FEI_NAMES, "FEI")
    return dict(zip(("8bit", "16bit", "navcam"), (CACHE / n for n in FEI_NAMES)))


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
