"""Fixtures: real Zeiss SEM TIFFs from the hyperspy 1.7.6 distribution.

The files are not committed. The session fixture looks in
``<repo>/.cache/sem-samples/`` and otherwise downloads ``hyperspy==1.7.6``
with pip (wheel first, sdist as fallback) and extracts
``hyperspy/tests/io/tiff_files/tiff_Zeiss_SEM.zip`` into that cache. When the
download is impossible (no network, no registry) the tests that need the files
skip with the reason.
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
ZIP_MEMBER = "hyperspy/tests/io/tiff_files/tiff_Zeiss_SEM.zip"
NAMES = ("test_tiff_Zeiss_SEM_1k.tif", "test_tiff_Zeiss_SEM_512pix.tif")


def _extract_inner(zip_bytes: bytes) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as inner:
        for name in inner.namelist():
            if name.endswith(".tif"):
                (CACHE / Path(name).name).write_bytes(inner.read(name))


def _download(tmp: Path) -> str | None:
    """Download hyperspy 1.7.6 and extract the Zeiss zip; return an error or None."""
    errors = []
    for extra in (["--only-binary", ":all:"], ["--no-binary", ":all:"]):
        cmd = [sys.executable, "-m", "pip", "download", "hyperspy==1.7.6", "--no-deps",
               "--disable-pip-version-check", "-d", str(tmp), *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            errors.append(proc.stderr.strip().splitlines()[-1:] or ["pip failed"])
            continue
        for dist in tmp.iterdir():
            if dist.suffix == ".whl":
                with zipfile.ZipFile(dist) as whl:
                    if ZIP_MEMBER in whl.namelist():
                        _extract_inner(whl.read(ZIP_MEMBER))
                        return None
            elif dist.name.endswith(".tar.gz"):
                with tarfile.open(dist) as sdist:
                    for member in sdist.getmembers():
                        if member.name.endswith(ZIP_MEMBER):
                            _extract_inner(sdist.extractfile(member).read())
                            return None
        errors.append([f"{ZIP_MEMBER} not found in the download"])
    return "; ".join(e[0] for e in errors)


@pytest.fixture(scope="session")
def zeiss_samples() -> dict[str, Path]:
    """Paths of the two real Zeiss TIFFs, keyed '1k' and '512'."""
    if not all((CACHE / n).exists() for n in NAMES):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                error = _download(Path(tmp))
            except (OSError, subprocess.SubprocessError) as exc:
                error = str(exc)
        if error or not all((CACHE / n).exists() for n in NAMES):
            pytest.skip(f"real Zeiss SEM samples unavailable (pip download hyperspy==1.7.6 failed: {error})")
    return {"1k": CACHE / NAMES[0], "512": CACHE / NAMES[1]}


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
