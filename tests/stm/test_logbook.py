"""dass.stm.logbook: parsing, matching against real measurement metadata, HDF5 writing.

The logbooks here are made up for the tests (labelled synthetic in their notes); the
measurements they are matched to are the real FAST and Nanonis sample files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from dass.stm.errors import LogbookError, StmFileError
from dass.stm.fast import fast_metadata
from dass.stm.logbook import (
    LogbookWarning,
    attach_preparation,
    match_preparation,
    parse_logbook,
    read_logbook,
    write_preparation_h5,
)
from dass.stm.nanonis import open_sxm

CSV = """\
sample,step,start,end,duration,temperature,pressure,operator,notes
Gr/Ni(111),sputter Ar+,2014-10-02T16:00,,20 min,,5e-6 mbar,AB,synthetic test entry
Gr/Ni(111),anneal,2014-10-02 16:30:00,2014-10-02 17:30:00,,650 °C,2e-9 mbar,AB,synthetic test entry
Gr/Ni(111),anneal again,03.10.2014 08:00,,1.5 h,900 K,,AB,synthetic test entry
Au(111),sputter,2014-10-03T09:00,,0.5 h,,,CD,"synthetic, other sample"
"""

YAML = """\
entries:
  - sample: Au/mica
    step: flash
    date: 2023-05-12
    time: "11:00"
    duration: 10 s
    temperature: 450 C
    notes: synthetic test entry
  - sample: Au/mica
    step: anneal
    start: 2023-05-11T09:00:00
    duration: 60
    notes: synthetic test entry, a day earlier
"""


def _old_fast_metadata(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return fast_metadata(dict(f["data"].attrs), int(f["data"].shape[0]))


def test_parse_csv_fields() -> None:
    book = parse_logbook(CSV, fmt="csv", source="prep.csv")
    assert [e.row for e in book] == [2, 3, 4, 5]
    first, second, third, _ = book
    assert first.start == dt.datetime(2014, 10, 2, 16, 0)
    assert first.end == first.start + dt.timedelta(minutes=20)
    assert first.pressure == {"value": 5e-6, "unit": "mbar"}
    assert second.temperature == {"value": 650.0, "unit": "°C"}
    assert second.duration == dt.timedelta(hours=1)
    assert third.start == dt.datetime(2014, 10, 3, 8, 0)
    assert third.end == dt.datetime(2014, 10, 3, 9, 30)
    assert third.temperature == {"value": 900.0, "unit": "K"}
    record = second.to_dict()
    assert record["duration"] == {"value": 60.0, "unit": "min"}
    assert record["logbook_row"] == 3
    json.dumps(record)


def test_parse_yaml_date_time_and_units(tmp_path: Path) -> None:
    path = tmp_path / "prep.yaml"
    path.write_text(YAML, encoding="utf-8")
    book = read_logbook(path)
    assert book[0].start == dt.datetime(2023, 5, 12, 11, 0)
    assert book[0].duration == dt.timedelta(seconds=10)
    assert book[0].temperature == {"value": 450.0, "unit": "°C"}
    assert book[1].duration == dt.timedelta(minutes=60)


def test_match_real_fast_file_by_sample(old_fast: Path) -> None:
    metadata = _old_fast_metadata(old_fast)
    assert metadata["sample"] == "Gr/Ni(111)"  # what the file says
    book = parse_logbook(CSV, fmt="csv")
    matched = match_preparation(book, metadata)  # auto: the file names its sample
    assert [e.step for e in matched] == ["sputter Ar+", "anneal", "anneal again"]
    out = attach_preparation(metadata, matched)
    assert "preparation" not in metadata  # input untouched
    assert [p["step"] for p in out["preparation"]] == ["sputter Ar+", "anneal", "anneal again"]
    json.dumps(out)


def test_match_real_fast_file_by_time(old_fast: Path) -> None:
    metadata = _old_fast_metadata(old_fast)  # measured 2014-10-03T11:22:25+02:00
    book = parse_logbook(CSV, fmt="csv")
    within_day = match_preparation(book, metadata, by="time", window=dt.timedelta(hours=12))
    # the Au(111) sputtering ended 09:30, before the measurement: time alone matches it
    assert [e.step for e in within_day] == ["anneal again", "sputter"]
    both = match_preparation(book, metadata, by="both", window=dt.timedelta(hours=12))
    assert [e.step for e in both] == ["anneal again"]
    late = parse_logbook("sample,step,start\nGr/Ni(111),dose CO,2014-10-03T12:00\n", fmt="csv")
    assert match_preparation(late, metadata, by="time") == []  # began after the measurement


def test_match_real_nanonis_scan_by_time(stm_sxm: Path) -> None:
    metadata = open_sxm(stm_sxm).metadata  # no sample name in Nanonis files
    book = parse_logbook(YAML, fmt="yaml")
    # measured 2023-05-12T13:50:59; the anneal ended 2023-05-11T10:00, the flash 11:00:10
    assert [e.step for e in match_preparation(book, metadata)] == ["anneal", "flash"]
    assert [e.step for e in match_preparation(book, metadata, window=dt.timedelta(hours=12))] == ["flash"]
    with pytest.raises(ValueError, match="needs metadata\\['sample'\\]"):
        match_preparation(book, metadata, by="sample")
    with pytest.raises(ValueError, match="by='name' is unknown"):
        match_preparation(book, metadata, by="name")
    with pytest.raises(ValueError, match="needs an ISO date"):
        match_preparation(book, {"sample": "x"}, by="time")


def test_write_into_hdf5_keeps_raw_data(old_fast: Path, tmp_path: Path) -> None:
    copy = tmp_path / "movie.h5"
    shutil.copyfile(old_fast, copy)
    with h5py.File(copy, "r") as f:
        raw = hashlib.sha256(f["data"][()].tobytes()).hexdigest()
        attrs = {k: np.asarray(v).tolist() for k, v in f["data"].attrs.items()}
    book = parse_logbook(CSV, fmt="csv")
    matched = match_preparation(book, _old_fast_metadata(copy))
    assert write_preparation_h5(copy, matched, source="prep.csv") == 3
    assert write_preparation_h5(copy, matched[:2], source="prep.csv") == 2  # replaces
    with h5py.File(copy, "r") as f:
        assert hashlib.sha256(f["data"][()].tobytes()).hexdigest() == raw
        assert {k: np.asarray(v).tolist() for k, v in f["data"].attrs.items()} == attrs
        group = f["dass_logbook"]
        assert group.attrs["count"] == 2 and sorted(group) == ["0", "1"]
        entry = group["1"].attrs
        assert entry["step"] == "anneal"
        assert entry["temperature"] == 650.0 and entry["temperature_unit"] == "°C"
        assert entry["start"] == "2014-10-02T16:30:00"


def test_write_hdf5_errors(old_fast: Path, tmp_path: Path) -> None:
    copy = tmp_path / "movie.h5"
    shutil.copyfile(old_fast, copy)
    book = parse_logbook(CSV, fmt="csv")
    with pytest.raises(LogbookError, match="group name 'data'"):
        write_preparation_h5(copy, book, group="data")
    with h5py.File(copy, "r+") as f:
        f.create_group("mine")
    with pytest.raises(LogbookError, match="/mine exists and was not written by dass"):
        write_preparation_h5(copy, book, group="mine")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(LogbookError, match=r"notes\.h5: not an HDF5 file"):
        write_preparation_h5(text, book)
    with pytest.raises(FileNotFoundError):
        write_preparation_h5(tmp_path / "none.h5", book)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sample,step,start,temprature\nA,b,2020-01-01,3\n", "row 2: unknown column 'temprature'"),
        ("sample,step,start\n,anneal,2020-01-01\n", "row 2: field 'sample' is empty"),
        ("sample,step\nA,anneal\n", "row 2: no 'start'"),
        ("sample,step,start\nA,anneal,yesterday\n", "row 2: field 'start': 'yesterday' is not a date"),
        ("sample,step,start,end\nA,b,2020-01-02,2020-01-01\n", "row 2: 'end' .* is before 'start'"),
        ("sample,step,start,temperature\nA,b,2020-01-01,300 F\n", "unit 'F' of '300 F' is not a temperature unit"),
        ("sample,step,start,pressure\nA,b,2020-01-01,low\n", "field 'pressure': 'low' is not a pressure"),
        ("sample,step,start,duration\nA,b,2020-01-01,2 days\n", "unit 'days' of duration"),
        ("sample,step,start,end,duration\nA,b,2020-01-01T10:00,2020-01-01T11:00,5\n", "disagree"),
        ("sample,step,start\nA,b,2020-01-01,extra\n", "row 2: 4 cells, but the header names 3"),
        ("sample,step,start,date\nA,b,2020-01-01,2020-01-01\n", "either 'start' or 'date'"),
        ("sample,step,start\n", "no entries"),
    ],
)
def test_csv_errors_name_row_and_field(text: str, message: str) -> None:
    with pytest.raises(LogbookError, match=message) as err:
        parse_logbook(text, fmt="csv", source="prep.csv")
    assert str(err.value).startswith("prep.csv: ")
    assert isinstance(err.value, StmFileError)


def test_yaml_and_file_errors(tmp_path: Path) -> None:
    with pytest.raises(LogbookError, match="malformed YAML"):
        parse_logbook("- [unclosed", fmt="yaml", source="p.yaml")
    with pytest.raises(LogbookError, match="must be a list of steps"):
        parse_logbook("sample: A", fmt="yaml", source="p.yaml")
    with pytest.raises(LogbookError, match="row 2: a step must be a mapping"):
        parse_logbook("- {sample: A, step: b, start: 2020-01-01}\n- just text\n", fmt="yaml")
    odd = tmp_path / "prep.txt"
    odd.write_text(CSV)
    with pytest.raises(LogbookError, match="cannot tell the logbook format"):
        read_logbook(odd)
    assert len(read_logbook(odd, fmt="csv")) == 4
    latin = tmp_path / "prep.csv"
    latin.write_bytes(CSV.encode("latin-1"))
    with pytest.raises(LogbookError, match="not UTF-8"):
        read_logbook(latin)
    with pytest.raises(FileNotFoundError):
        read_logbook(tmp_path / "none.csv")
    with pytest.raises(ValueError, match="format 'xls' is unknown"):
        parse_logbook("", fmt="xls")


def test_yaml_unquoted_clock_time() -> None:
    # YAML 1.1 (PyYAML) reads an unquoted 11:05 as the base-60 number 665
    with pytest.warns(LogbookWarning, match=r"line 1, field 'time': '11:05' .* number 665"):
        book = parse_logbook("- {sample: A, step: b, date: 2023-05-12, time: 11:05}\n", fmt="yaml")
    assert book[0].start == dt.datetime(2023, 5, 12, 11, 5)


def test_yaml_times_with_seconds_are_read_as_written(tmp_path: Path) -> None:
    # an unquoted 11:00:30 is 39630 for YAML 1.1; read as a number of minutes it became 12:30:00
    path = tmp_path / "prep.yaml"
    path.write_text(
        "- sample: Au(111)\n"
        "  step: flash\n"
        "  date: 2023-05-12\n"
        "  time: 11:00:30\n"
        "  end: 2023-05-12 11:10:00\n"
        "  temperature: 720\n"
        "- sample: 010\n"  # a sample called 010 is not the octal number 8
        "  step: anneal\n"
        "  start: 2023-05-12T09:00:00\n"
        "  duration: '30'\n"
    )
    with pytest.warns(LogbookWarning) as caught:
        book = read_logbook(path)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages
    assert "line 4, field 'time': '11:00:30'" in messages[0] and "39630" in messages[0]
    assert str(path) in messages[0] and "Quote it" in messages[0]
    assert "line 7, field 'sample': '010'" in messages[1] and "number 8" in messages[1]
    assert book[0].start == dt.datetime(2023, 5, 12, 11, 0, 30)
    assert book[0].end == dt.datetime(2023, 5, 12, 11, 10)
    assert book[0].temperature == {"value": 720.0, "unit": "K"}
    assert book[1].sample == "010" and book[1].end == dt.datetime(2023, 5, 12, 9, 30)
    # quoted values, plain numbers and ISO dates need no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", LogbookWarning)
        book = parse_logbook(YAML, fmt="yaml")
    assert book[0].start == dt.datetime(2023, 5, 12, 11, 0)


def test_csv_times_are_text() -> None:
    book = parse_logbook("sample,step,date,time\nA,b,12.05.2023,11:00:30\n", fmt="csv")
    assert book[0].start == dt.datetime(2023, 5, 12, 11, 0, 30)
