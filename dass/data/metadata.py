"""Dataset metadata: the ``dataset.json`` schema ``dass.dataset/1`` (see docs/metadata.md).

:func:`parse_metadata` turns the bytes of a ``dataset.json`` into a typed
:class:`DatasetMetadata` or raises :class:`~dass.data.errors.MetadataError` naming the file and
the dotted field at fault, so the person who maintains the file knows exactly what to fix.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import json_kind
from .errors import MetadataError

__all__ = [
    "SCHEMA",
    "NAME_RE",
    "METADATA_FILE",
    "PROPOSAL_FILE",
    "MAX_METADATA_BYTES",
    "Creator",
    "DatasetMetadata",
    "ProposalMetadata",
    "parse_metadata",
    "parse_proposal",
    "dump_metadata",
    "sha256_bytes",
    "sha256_file",
]

#: Schema name and version that ``dataset.json`` must declare in its ``schema`` field.
SCHEMA = "dass.dataset/1"
#: Proposal and dataset folder names.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: File name of a dataset's metadata inside its folder.
METADATA_FILE = "dataset.json"
#: File name of the optional proposal metadata inside a proposal folder.
PROPOSAL_FILE = "proposal.json"
#: Largest metadata file accepted (1 MiB).
MAX_METADATA_BYTES = 1024 * 1024

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CHECKSUM_RE = re.compile(r"^sha256:[0-9a-fA-F]{64}$")
_ORCID_RE = re.compile(r"^(https://orcid\.org/)?\d{4}-\d{4}-\d{4}-\d{3}[0-9X]$")
_CHUNK = 1024 * 1024

_TOP_LEVEL = (
    "schema",
    "title",
    "creators",
    "dates",
    "licence",
    "keywords",
    "description",
    "instrument",
    "technique",
    "stacks",
    "domain",
    "access",
    "checksums",
    "synthetic",
)
_REQUIRED = ("schema", "title", "creators", "dates", "licence")
_CREATOR_KEYS = ("name", "affiliation", "orcid")
_DATE_KEYS = ("created", "collected", "published")
_ACCESS_KEYS = ("groups", "users", "public", "embargo_until")


@dataclass(frozen=True)
class Creator:
    """One DataCite creator of a dataset."""

    name: str
    affiliation: str | None = None
    orcid: str | None = None


@dataclass
class DatasetMetadata:
    """The validated content of one ``dataset.json``.

    Optional strings are ``None`` when absent; optional lists and dicts are empty; the access
    fields carry their documented defaults. ``raw`` is the JSON object exactly as read.
    """

    proposal: str
    schema: str
    title: str
    creators: list[Creator]
    created: dt.date
    licence: str
    collected: dt.date | None = None
    published: dt.date | None = None
    keywords: list[str] = field(default_factory=list)
    description: str | None = None
    instrument: str | None = None
    technique: str | None = None
    stacks: list[str] = field(default_factory=list)
    domain: dict[str, Any] = field(default_factory=dict)
    access_groups: list[str] = field(default_factory=list)
    access_users: list[str] = field(default_factory=list)
    public: bool = False
    embargo_until: dt.date | None = None
    checksums: dict[str, str] = field(default_factory=dict)
    synthetic: bool = False
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProposalMetadata:
    """The content of an optional ``proposal.json`` (all fields optional)."""

    title: str | None = None
    pi: str | None = None
    description: str | None = None


# ---------------------------------------------------------------------------------------------
# parsing helpers


class _Checker:
    """Small helper that raises MetadataError with the file path filled in."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, fieldname: str, message: str) -> MetadataError:
        return MetadataError(self.path, fieldname, message)

    def string(self, value: Any, fieldname: str, *, empty_ok: bool = False) -> str:
        if not isinstance(value, str):
            raise self.fail(fieldname, f"must be a string, not {json_kind(value)}")
        if not empty_ok and not value.strip():
            raise self.fail(fieldname, "must not be empty")
        return value

    def opt_string(self, value: Any, fieldname: str) -> str | None:
        return None if value is None else self.string(value, fieldname, empty_ok=True)

    def boolean(self, value: Any, fieldname: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(fieldname, f"must be true or false, not {json_kind(value)}")
        return value

    def obj(self, value: Any, fieldname: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(fieldname, f"must be an object, not {json_kind(value)}")
        return value

    def strings(self, value: Any, fieldname: str) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(fieldname, f"must be a list of strings, not {json_kind(value)}")
        return [self.string(v, f"{fieldname}[{i}]") for i, v in enumerate(value)]

    def only_keys(self, value: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
        for key in value:
            if key not in allowed:
                raise self.fail(
                    f"{prefix}{key}",
                    f"unknown field; allowed fields are {', '.join(allowed)}",
                )

    def date(self, value: Any, fieldname: str) -> dt.date:
        if not isinstance(value, str) or not _DATE_RE.match(value):
            raise self.fail(fieldname, f"must be a date written YYYY-MM-DD, not {value!r}")
        try:
            return dt.date.fromisoformat(value)
        except ValueError as e:
            raise self.fail(fieldname, f"{value!r} is not a valid date: {e}") from None

    def opt_date(self, value: Any, fieldname: str) -> dt.date | None:
        return None if value is None else self.date(value, fieldname)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(data: bytes | str, path: str) -> Any:
    """Decode and parse, turning every problem into a whole-file MetadataError."""
    size = len(data.encode("utf-8") if isinstance(data, str) else data)
    if size > MAX_METADATA_BYTES:
        raise MetadataError(
            path,
            "",
            f"file is {size} bytes, more than the limit of {MAX_METADATA_BYTES} bytes (1 MiB): "
            "keep large metadata in a separate file of the dataset",
        )
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise MetadataError(path, "", f"file is not UTF-8 text (byte {e.start}): save it as UTF-8") from None
    else:
        text = data
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as e:
        raise MetadataError(path, "", f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except ValueError as e:  # from the hooks: duplicate keys, NaN/Infinity
        raise MetadataError(path, "", f"invalid JSON: {e}") from None


# ---------------------------------------------------------------------------------------------
# public API


def parse_metadata(data: bytes | str, *, path: str, proposal: str) -> DatasetMetadata:
    """Validate a ``dataset.json`` and return its typed content.

    Parameters
    ----------
    data : bytes or str
        Content of the file (at most :data:`MAX_METADATA_BYTES`; bytes are decoded as UTF-8).
    path : str
        URL or path of the file, used in error messages.
    proposal : str
        Proposal the dataset belongs to; the default of ``access.groups`` is ``[proposal]``.

    Returns
    -------
    DatasetMetadata

    Raises
    ------
    MetadataError
        With ``field`` naming the offending dotted field: invalid JSON (field ``""``, with line
        and column), a file over 1 MiB, missing required fields, wrong types, unknown fields,
        malformed dates or checksums, a wrong ``schema``.

    Examples
    --------
    >>> md = parse_metadata(
    ...     '{"schema": "dass.dataset/1", "title": "Grains", "creators": [{"name": "Ada"}],'
    ...     ' "dates": {"created": "2024-05-01"}, "licence": "CC-BY-4.0"}',
    ...     path="mem://p1/d1/dataset.json", proposal="p1")
    >>> md.access_groups, md.public, md.created.year
    (['p1'], False, 2024)
    """
    c = _Checker(path)
    doc = _load_json(data, path)
    if not isinstance(doc, dict):
        raise c.fail("", f"the file must hold a JSON object, not {json_kind(doc)}")
    c.only_keys(doc, _TOP_LEVEL, "")
    for name in _REQUIRED:
        if name not in doc:
            raise c.fail(name, "is required")

    schema = c.string(doc["schema"], "schema")
    if schema != SCHEMA:
        raise c.fail("schema", f"must be {SCHEMA!r}, not {schema!r}")
    title = c.string(doc["title"], "title")
    licence = c.string(doc["licence"], "licence")
    if any(ch.isspace() for ch in licence.strip()):
        raise c.fail("licence", f"must be an SPDX licence id such as 'CC-BY-4.0', not {licence!r}")

    raw_creators = doc["creators"]
    if not isinstance(raw_creators, list):
        raise c.fail("creators", f"must be a list of {{'name', 'affiliation', 'orcid'}} objects, not {json_kind(raw_creators)}")
    if not raw_creators:
        raise c.fail("creators", "must name at least one creator")
    creators = []
    for i, item in enumerate(raw_creators):
        prefix = f"creators[{i}]"
        item = c.obj(item, prefix)
        c.only_keys(item, _CREATOR_KEYS, prefix + ".")
        if "name" not in item:
            raise c.fail(f"{prefix}.name", "is required")
        orcid = c.opt_string(item.get("orcid"), f"{prefix}.orcid")
        if orcid is not None and not _ORCID_RE.match(orcid):
            raise c.fail(f"{prefix}.orcid", f"must be an ORCID iD like 0000-0002-1825-0097, not {orcid!r}")
        creators.append(
            Creator(
                name=c.string(item["name"], f"{prefix}.name"),
                affiliation=c.opt_string(item.get("affiliation"), f"{prefix}.affiliation"),
                orcid=orcid,
            )
        )

    dates = c.obj(doc["dates"], "dates")
    c.only_keys(dates, _DATE_KEYS, "dates.")
    if "created" not in dates:
        raise c.fail("dates.created", "is required")
    created = c.date(dates["created"], "dates.created")
    collected = c.opt_date(dates.get("collected"), "dates.collected")
    published = c.opt_date(dates.get("published"), "dates.published")

    keywords = c.strings(doc.get("keywords", []), "keywords")
    description = c.opt_string(doc.get("description"), "description")
    instrument = c.opt_string(doc.get("instrument"), "instrument")
    technique = c.opt_string(doc.get("technique"), "technique")
    stacks = c.strings(doc.get("stacks", []), "stacks")
    domain = c.obj(doc.get("domain", {}), "domain")

    access = c.obj(doc.get("access", {}), "access")
    c.only_keys(access, _ACCESS_KEYS, "access.")
    if "groups" in access:
        groups = c.strings(access["groups"], "access.groups")
    else:
        groups = [proposal]
    users = c.strings(access.get("users", []), "access.users")
    public = c.boolean(access.get("public", False), "access.public")
    embargo_until = c.opt_date(access.get("embargo_until"), "access.embargo_until")

    raw_checksums = c.obj(doc.get("checksums", {}), "checksums")
    checksums: dict[str, str] = {}
    for rel, value in raw_checksums.items():
        fieldname = f"checksums.{rel}"
        parts = rel.split("/")
        if not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
            raise c.fail(fieldname, "must be a relative path inside the dataset folder, like 'raw/image_001.tif'")
        value = c.string(value, fieldname)
        if not _CHECKSUM_RE.match(value):
            raise c.fail(fieldname, f"must be 'sha256:' followed by 64 hex digits, not {value!r}")
        checksums[rel] = value.lower()

    synthetic = c.boolean(doc.get("synthetic", False), "synthetic")

    return DatasetMetadata(
        proposal=proposal,
        schema=schema,
        title=title,
        creators=creators,
        created=created,
        licence=licence,
        collected=collected,
        published=published,
        keywords=keywords,
        description=description,
        instrument=instrument,
        technique=technique,
        stacks=stacks,
        domain=domain,
        access_groups=groups,
        access_users=users,
        public=public,
        embargo_until=embargo_until,
        checksums=checksums,
        synthetic=synthetic,
        raw=doc,
    )


def parse_proposal(data: bytes | str, *, path: str) -> ProposalMetadata:
    """Validate a ``proposal.json`` (``{"title", "pi", "description"}``, all optional strings).

    Raises
    ------
    MetadataError
        Naming the field at fault, or ``""`` for bad JSON or a file over 1 MiB.
    """
    c = _Checker(path)
    doc = _load_json(data, path)
    if not isinstance(doc, dict):
        raise c.fail("", f"the file must hold a JSON object, not {json_kind(doc)}")
    c.only_keys(doc, ("title", "pi", "description"), "")
    return ProposalMetadata(
        title=c.opt_string(doc.get("title"), "title"),
        pi=c.opt_string(doc.get("pi"), "pi"),
        description=c.opt_string(doc.get("description"), "description"),
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dump_metadata(metadata: Mapping[str, Any]) -> str:
    """Write a metadata dict as pretty JSON (2-space indent, UTF-8 kept, trailing newline).

    Dates are written ``YYYY-MM-DD``. Key order is kept as given.
    """
    return json.dumps(dict(metadata), indent=2, ensure_ascii=False, default=_json_default) + "\n"


def sha256_bytes(data: bytes) -> str:
    """Checksum of bytes in the ``sha256:<hex>`` form used by ``checksums``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(fs: Any, path: str) -> str:
    """Checksum of a file of an fsspec filesystem, read in 1 MiB chunks.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        The filesystem holding the file.
    path : str
        Path of the file inside ``fs``.

    Returns
    -------
    str
        ``"sha256:<64 lowercase hex digits>"``.
    """
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()
