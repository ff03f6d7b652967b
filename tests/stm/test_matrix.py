"""dass.stm.matrix: error paths only.

No Omicron MATRIX sample files are publicly distributed, so reading a real MATRIX image is NOT
tested here; these tests cover what can be tested honestly: names, signatures, the missing
result file, and a damaged file handed to access2theMatrix itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dass.stm.errors import MatrixFileError, StmFileError
from dass.stm.matrix import open_matrix, read_matrix, result_file_for

NAME = "default_2014Jun04-094807_STM-STM_Spectroscopy--1_1.Z_mtrx"
SIGNATURE = b"ONTMATRX0101"


def test_result_file_name() -> None:
    assert result_file_for(Path("/x") / NAME) == Path("/x/default_2014Jun04-094807_STM-STM_Spectroscopy_0001.mtrx")
    with pytest.raises(MatrixFileError, match="not a MATRIX data file name"):
        result_file_for("scan.sxm")


def test_missing_result_file(tmp_path: Path) -> None:
    data = tmp_path / NAME
    data.write_bytes(SIGNATURE + b"\0" * 64)
    with pytest.raises(MatrixFileError) as err:
        open_matrix(data)
    message = str(err.value)
    assert message.startswith(f"{data}: ")
    assert "default_2014Jun04-094807_STM-STM_Spectroscopy_0001.mtrx is missing" in message
    assert isinstance(err.value, StmFileError)


def test_not_a_matrix_file(tmp_path: Path, stm_sxm: Path) -> None:
    fake = tmp_path / NAME
    shutil.copyfile(stm_sxm, fake)  # a real Nanonis file under a MATRIX name
    with pytest.raises(MatrixFileError, match="not a MATRIX file: it does not start with the ONTMATRX0101"):
        open_matrix(fake)
    with pytest.raises(MatrixFileError, match="not a MATRIX data file name"):
        open_matrix(stm_sxm)
    with pytest.raises(FileNotFoundError):
        open_matrix(tmp_path / "gone--1_1.Z_mtrx")


def test_result_file_without_signature(tmp_path: Path) -> None:
    data = tmp_path / NAME
    data.write_bytes(SIGNATURE + b"\0" * 64)
    result_file_for(data).write_bytes(b"plain text")
    with pytest.raises(MatrixFileError, match="result file .*_0001.mtrx is not a MATRIX file"):
        open_matrix(data)


def test_damaged_files_reported_by_access2thematrix(tmp_path: Path) -> None:
    data = tmp_path / NAME
    data.write_bytes(SIGNATURE + b"\xff" * 40)
    result_file_for(data).write_bytes(SIGNATURE + b"\xff" * 40)
    with pytest.raises(MatrixFileError, match="access2theMatrix cannot read it: .*" + NAME):
        read_matrix(data)


def test_spectroscopy_curve_and_urls(tmp_path: Path) -> None:
    curve = tmp_path / "default--1_1.I(V)_mtrx"
    curve.write_bytes(SIGNATURE + b"\0" * 8)
    result_file_for(curve).write_bytes(SIGNATURE + b"\0" * 8)
    with pytest.raises(MatrixFileError, match="spectroscopy curve, not an image"):
        open_matrix(curve)
    with pytest.raises(MatrixFileError, match="read from a folder"):
        open_matrix("s3://bucket/" + NAME)
