"""Tests of dass.data.metadata: the dataset.json schema dass.dataset/1."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import fsspec
import pytest

from dass.data.errors import MetadataError
from dass.data.metadata import (
    MAX_METADATA_BYTES,
    NAME_RE,
    SCHEMA,
    Creator,
    dump_metadata,
    parse_metadata,
    parse_proposal,
    sha256_file,
)

PATH = "file:///repo/p1/d1/dataset.json"


def full_doc() -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "title": "Grain boundaries",
        "creators": [{"name": "Ada", "affiliation": "Foundry", "orcid": "0000-0002-1825-0097"}, {"name": "Bob"}],
        "dates": {"created": "2024-05-01", "collected": "2024-04-30", "published": "2024-06-01"},
        "licence": "CC-BY-4.0",
        "keywords": ["grain", "boundary"],
        "description": "SEM images",
        "instrument": "Zeiss Supra 40",
        "technique": "SEM",
        "stacks": ["sem"],
        "domain": {"voltage_kV": 5, "classifier": {"category": "fibres"}},
        "access": {"groups": ["p1", "p9"], "public": True, "embargo_until": "2026-01-31"},
        "checksums": {"raw/image_001.tif": "sha256:" + "a" * 64},
        "synthetic": True,
    }


def parse(doc: Any) -> Any:
    text = doc if isinstance(doc, (str, bytes)) else json.dumps(doc)
    return parse_metadata(text, path=PATH, proposal="p1")


def test_full_document_is_typed():
    doc = full_doc()
    md = parse(doc)
    assert md.schema == SCHEMA and md.title == "Grain boundaries" and md.proposal == "p1"
    assert md.creators == [Creator("Ada", "Foundry", "0000-0002-1825-0097"), Creator("Bob")]
    assert md.created == dt.date(2024, 5, 1)
    assert md.collected == dt.date(2024, 4, 30) and md.published == dt.date(2024, 6, 1)
    assert md.licence == "CC-BY-4.0"
    assert md.keywords == ["grain", "boundary"] and md.stacks == ["sem"]
    assert md.instrument == "Zeiss Supra 40" and md.technique == "SEM" and md.description == "SEM images"
    assert md.domain["classifier"] == {"category": "fibres"}
    assert md.access_groups == ["p1", "p9"] and md.public is True
    assert md.embargo_until == dt.date(2026, 1, 31)
    assert md.checksums == {"raw/image_001.tif": "sha256:" + "a" * 64}
    assert md.synthetic is True
    assert md.raw == doc


def test_minimal_document_gets_defaults():
    doc = {k: full_doc()[k] for k in ("schema", "title", "creators", "licence")}
    doc["dates"] = {"created": "2024-05-01"}
    md = parse(doc)
    assert md.access_groups == ["p1"]  # default: the proposal
    assert md.public is False and md.embargo_until is None and md.synthetic is False
    assert md.keywords == [] and md.stacks == [] and md.checksums == {} and md.domain == {}
    assert md.instrument is None and md.technique is None and md.description is None and md.collected is None


def test_bytes_with_bom_and_explicit_empty_groups():
    doc = full_doc()
    doc["access"] = {"groups": [], "public": True}
    md = parse_metadata(b"\xef\xbb\xbf" + json.dumps(doc).encode(), path=PATH, proposal="p1")
    assert md.access_groups == []


def _without(key: str) -> dict[str, Any]:
    doc = full_doc()
    del doc[key]
    return doc


def _with(path: str, value: Any) -> dict[str, Any]:
    doc = full_doc()
    target = doc
    *parents, last = path.split(".")
    for p in parents:
        target = target[int(p)] if isinstance(target, list) else target[p]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return doc


@pytest.mark.parametrize(
    "doc, field, words",
    [
        (_without("title"), "title", "required"),
        (_without("schema"), "schema", "required"),
        (_without("creators"), "creators", "required"),
        (_without("dates"), "dates", "required"),
        (_without("licence"), "licence", "required"),
        (_with("schema", "dass.dataset/2"), "schema", "dass.dataset/1"),
        (_with("title", 3), "title", "string"),
        (_with("title", "  "), "title", "empty"),
        (_with("creators", []), "creators", "at least one"),
        (_with("creators", "Ada"), "creators", "list"),
        (_with("creators.0", {"affiliation": "x"}), "creators[0].name", "required"),
        (_with("creators.1", {"name": "Bob", "email": "b@x"}), "creators[1].email", "unknown"),
        (_with("creators.0.orcid", "1234"), "creators[0].orcid", "ORCID"),
        (_with("dates", {"collected": "2024-01-01"}), "dates.created", "required"),
        (_with("dates.created", "01/05/2024"), "dates.created", "YYYY-MM-DD"),
        (_with("dates.created", "2024-02-30"), "dates.created", "not a valid date"),
        (_with("dates.published", 2024), "dates.published", "YYYY-MM-DD"),
        (_with("dates.updated", "2024-01-01"), "dates.updated", "unknown"),
        (_with("licence", "CC BY 4.0"), "licence", "SPDX"),
        (_with("keywords", "grain"), "keywords", "list of strings"),
        (_with("keywords", ["ok", 5]), "keywords[1]", "string"),
        (_with("stacks", [None]), "stacks[0]", "string"),
        (_with("domain", []), "domain", "object"),
        (_with("access", True), "access", "object"),
        (_with("access.groups", "p1"), "access.groups", "list"),
        (_with("access.public", "yes"), "access.public", "true or false"),
        (_with("access.public", 1), "access.public", "true or false"),
        (_with("access.embargo_until", "soon"), "access.embargo_until", "YYYY-MM-DD"),
        (_with("access.owner", "x"), "access.owner", "unknown"),
        (_with("checksums", {"raw/a.tif": "md5:abc"}), "checksums.raw/a.tif", "sha256"),
        (_with("checksums", {"raw/a.tif": "sha256:" + "g" * 64}), "checksums.raw/a.tif", "64 hex"),
        (_with("checksums", {"../etc/passwd": "sha256:" + "a" * 64}), "checksums.../etc/passwd", "relative"),
        (_with("synthetic", "false"), "synthetic", "true or false"),
        (_with("colour", "blue"), "colour", "unknown field"),
    ],
)
def test_errors_name_file_and_field(doc, field, words):
    with pytest.raises(MetadataError) as info:
        parse(doc)
    err = info.value
    assert err.path == PATH
    assert err.field == field
    assert words.lower() in err.message.lower()
    assert str(err) == f"{PATH}: {field}: {err.message}"


def test_embargo_may_be_null():
    assert parse(_with("access.embargo_until", None)).embargo_until is None


@pytest.mark.parametrize(
    "text, words",
    [
        ('{"schema": "dass.dataset/1",\n  "title": }', "line 2 column"),
        ("[1, 2]", "JSON object"),
        ('{"title": "a", "title": "b"}', "duplicate key"),
        ('{"title": NaN}', "NaN"),
        (b"\xff\xfe{}", "UTF-8"),
        ("", "line 1 column 1"),
    ],
)
def test_whole_file_errors_have_empty_field(text, words):
    with pytest.raises(MetadataError) as info:
        parse(text)
    err = info.value
    assert err.field == "" and err.path == PATH
    assert words in err.message
    assert str(err) == f"{PATH}: {err.message}"


def test_oversized_file_is_rejected():
    doc = full_doc()
    doc["description"] = "x" * MAX_METADATA_BYTES
    with pytest.raises(MetadataError) as info:
        parse(doc)
    assert info.value.field == "" and "1 MiB" in info.value.message


def test_proposal_json():
    p = parse_proposal('{"title": "Steel", "pi": "Ada"}', path="x/proposal.json")
    assert (p.title, p.pi, p.description) == ("Steel", "Ada", None)
    with pytest.raises(MetadataError) as info:
        parse_proposal('{"title": 1}', path="x/proposal.json")
    assert info.value.field == "title"
    with pytest.raises(MetadataError) as info:
        parse_proposal('{"members": []}', path="x/proposal.json")
    assert info.value.field == "members"


@pytest.mark.parametrize(
    "name, ok",
    [("p1", True), ("p-2026-001", True), ("a.b_c", True), ("x" * 64, True), ("x" * 65, False),
     (".hidden", False), ("-x", False), ("a/b", False), ("", False), ("a b", False)],
)
def test_name_re(name, ok):
    assert bool(NAME_RE.match(name)) is ok


def test_dump_round_trips():
    doc = full_doc()
    doc["title"] = "Körner"
    text = dump_metadata(doc)
    assert text.endswith("\n") and "Körner" in text and '\n  "schema"' in text
    assert json.loads(text) == doc
    assert json.loads(dump_metadata({"d": dt.date(2024, 1, 2)})) == {"d": "2024-01-02"}


def test_sha256_file_streams(tmp_path):
    import hashlib

    data = b"0123456789" * 300_000  # 3 MB: several chunks
    (tmp_path / "f.bin").write_bytes(data)
    fs = fsspec.filesystem("file")
    assert sha256_file(fs, str(tmp_path / "f.bin")) == "sha256:" + hashlib.sha256(data).hexdigest()
