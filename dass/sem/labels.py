"""Store uploaded SEM images, remember classifier suggestions, and confirm labels.

Torch-free: the service (:mod:`dass.sem.web`) classifies, this module keeps the
data. Three things live here:

- **uploads**: :func:`store_upload` writes the uploaded images as a new dataset
  ``<proposal>/sem-upload-<YYYYMMDD>-<id>`` of the repository (images first, its
  ``dataset.json`` last, built by :func:`upload_metadata`) and indexes it in the catalogue,
  so nothing a user uploaded is lost even if classifying fails.
- **suggestions**: :func:`record_classifications` keeps every classified image (dataset, file,
  model, suggested category, all scores) in the ``sem_classifications`` table (migration
  ``0003``), under a random id the client confirms later.
- **labels**: :func:`confirm` stores the confirmed (or changed) category in the dataset's
  metadata, ``domain.labels[<path>]`` plus the searchable ``domain.categories`` list
  (:func:`apply_label`), and in a sidecar file ``<image>.label.json`` beside the image (the
  image itself is never touched); the dataset is then re-indexed, so
  ``Catalog.search(category=...)`` finds it. The metadata is written through
  :func:`dass.data.metadata_writer.update_dataset` (the dataset's lock, validation before
  writing, an atomic write, re-indexing), like every other writer of ``dataset.json``.

Only members of a dataset's proposal (a hub group of that name) and administrators may label
it; everyone else gets :class:`LabelError` 404 when they cannot see the dataset, 403 when they
can (a public dataset of another proposal).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ..errors import DassError
from ..data.access import Identity, can_see
from ..data.catalog import Catalog
from ..data.errors import DassDataError
from ..data.metadata import METADATA_FILE, NAME_RE, sha256_bytes
from ..data.metadata_writer import MetadataUpdateError, publish_dataset, update_dataset
from ..data.orm import SemClassification
from ..data.storage import Storage
from .categories import CATEGORY_IDS, display_name

__all__ = [
    "LABEL_SCHEMA",
    "SIDECAR_SUFFIX",
    "UPLOAD_PREFIX",
    "LabelError",
    "SemClassification",
    "Upload",
    "apply_label",
    "can_label",
    "confirm",
    "get_classification",
    "is_member",
    "record_classifications",
    "safe_filename",
    "sidecar_path",
    "store_upload",
    "upload_dataset_name",
    "upload_metadata",
    "visible_classification",
]

log = logging.getLogger(__name__)

#: Schema name of the sidecar label files.
LABEL_SCHEMA = "dass.sem-label/1"
#: A label's sidecar file is the image's path with this suffix.
SIDECAR_SUFFIX = ".label.json"
#: Dataset names of uploads start with this.
UPLOAD_PREFIX = "sem-upload"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class LabelError(DassError):
    """A request about uploads or labels that cannot be done; ``status`` is the HTTP status.

    ``message`` is for the user: it says what is wrong and what to do.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Upload:
    """Where :func:`store_upload` put the images: the dataset id and each file's path in it."""

    dataset: str
    paths: tuple[str, ...]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def is_member(identity: Identity, proposal: str) -> bool:
    """Whether ``identity`` may add data to and label datasets of ``proposal``.

    Members are the hub group named like the proposal; administrators may too.
    """
    return identity.admin or proposal in identity.groups


# -- uploads --------------------------------------------------------------------------------------


def upload_dataset_name(now: dt.datetime | None = None, token: str | None = None) -> str:
    """A new dataset name ``sem-upload-<YYYYMMDD>-<8 hex>`` (a valid folder name).

    Examples
    --------
    >>> upload_dataset_name(dt.datetime(2026, 11, 22), "0123abcd")
    'sem-upload-20261122-0123abcd'
    """
    now = now or _utcnow()
    token = token or secrets.token_hex(4)
    return f"{UPLOAD_PREFIX}-{now:%Y%m%d}-{token}"


def safe_filename(name: str, taken: Iterable[str] = ()) -> str:
    """A file name for the repository from an uploaded one: the base name, with characters
    other than letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``, made unique against
    ``taken`` (``name-2.png``…), never ``dataset.json`` or a label sidecar.

    Examples
    --------
    >>> safe_filename("../my scans/Wire 1.tif")
    'Wire_1.tif'
    >>> safe_filename("a.png", taken={"a.png"})
    'a-2.png'
    """
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip("._") or "image"
    if base == METADATA_FILE or base.endswith(SIDECAR_SUFFIX):
        base = "upload-" + base.replace(".json", "_json")
    base = base[:120]
    taken = set(taken)
    if base not in taken:
        return base
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    n = 2
    while True:
        candidate = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
        if candidate not in taken:
            return candidate
        n += 1


def upload_metadata(
    proposal: str,
    user: str,
    files: Mapping[str, bytes | str],
    *,
    today: dt.date,
    instrument_metadata: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``dataset.json`` of an upload (a pure builder).

    Parameters
    ----------
    proposal : str
        The proposal the upload belongs to; its group is the dataset's only access group.
    user : str
        Who uploaded (the creator).
    files : mapping of str to bytes or str
        Repository file name -> content, or its SHA-256 (hex) already computed, for the checksums.
    today : datetime.date
        ``dates.created``.
    instrument_metadata : mapping, optional
        Normalized instrument metadata per file (:attr:`dass.sem.io.SemImage.metadata`);
        kept under ``domain.instrument``; its ``instrument`` names the dataset's instrument
        when all files agree.

    Returns
    -------
    dict
        Passes :func:`dass.data.metadata.parse_metadata` with ``proposal=proposal``.
    """
    per_file = {k: dict(v) for k, v in (instrument_metadata or {}).items() if v}
    instruments = {str(m["instrument"]) for m in per_file.values() if m.get("instrument")}
    n = len(files)
    doc: dict[str, Any] = {
        "schema": "dass.dataset/1",
        "title": f"SEM images uploaded by {user} for classification ({n} image{'s' if n != 1 else ''})",
        "creators": [{"name": user}],
        "dates": {"created": today.isoformat()},
        "licence": "CC-BY-4.0",
        "keywords": ["SEM", "upload", "classification"],
        "description": (
            f"SEM images {user} uploaded to the dass classify service on {today.isoformat()} "
            f"for proposal {proposal}. Confirmed categories are in domain.labels and in a "
            f"{SIDECAR_SUFFIX} file beside each image."
        ),
        "technique": "SEM",
        "stacks": ["sem"],
        "domain": {"upload": {"user": user, "files": sorted(files)}, "instrument": per_file},
        "access": {"groups": [proposal], "public": False},
        "checksums": {name: data if isinstance(data, str) else sha256_bytes(data)
                      for name, data in sorted(files.items())},
    }
    if len(instruments) == 1:
        doc["instrument"] = instruments.pop()
    return doc


def _write(storage: Storage, path: str, data: bytes, made: set[str] | None = None) -> None:
    """Write one file, making its folder first unless it is in `made` (folders made already,
    added to)."""
    parent = path.rsplit("/", 1)[0]
    with storage.translate_errors(f"writing {storage.url_of(path)}"):
        if made is None or parent not in made:
            storage.fs.makedirs(parent, exist_ok=True)
            if made is not None:
                made.add(parent)
        storage.fs.pipe_file(path, data)


def store_upload(
    storage: Storage,
    catalog: Catalog,
    proposal: str,
    user: str,
    files: Sequence[tuple[str, bytes | Callable[[], bytes]]],
    *,
    instrument_metadata: Sequence[Mapping[str, Any] | None] | None = None,
    now: dt.datetime | None = None,
) -> Upload:
    """Write uploaded images as a new dataset of ``proposal`` and index it.

    Parameters
    ----------
    storage, catalog
        The repository and its catalogue.
    proposal : str
        A valid proposal name; the caller has checked that ``user`` is a member.
    user : str
        Who uploaded.
    files : sequence of (name, bytes or callable)
        Uploaded file names (any; made safe and unique by :func:`safe_filename`) and contents,
        or functions that return them: those are called one file at a time, so that only one
        file is in memory at once.
    instrument_metadata : sequence of dict, optional
        Normalized instrument metadata of each file, in the same order.
    now : datetime, optional
        The time of the upload (default: now).

    Returns
    -------
    Upload
        The new dataset's id and each file's repository path, in the order given.

    Raises
    ------
    LabelError
        400 for an invalid proposal name or no files.
    dass.data.errors.StorageError
        When the repository cannot be written.
    """
    if not isinstance(proposal, str) or not NAME_RE.match(proposal):
        raise LabelError(400, f"invalid proposal name {proposal!r}")
    if not files:
        raise LabelError(400, "no files to store")
    now = now or _utcnow()
    name = upload_dataset_name(now)
    folder = storage.dataset_path(proposal, name)
    contents: dict[str, str] = {}  # repository name -> sha256
    paths: list[str] = []
    meta: dict[str, Mapping[str, Any]] = {}
    made: set[str] = set()  # one makedirs per folder, not per file
    for i, (filename, data) in enumerate(files):
        rel = safe_filename(filename, contents)
        data = data() if callable(data) else data
        _write(storage, f"{folder}/{rel}", data, made)
        contents[rel] = sha256_bytes(data)
        del data
        paths.append(rel)
        if instrument_metadata is not None and i < len(instrument_metadata) and instrument_metadata[i]:
            meta[rel] = instrument_metadata[i]
    doc = upload_metadata(proposal, user, contents, today=now.date(), instrument_metadata=meta)
    # dataset.json last (validated, atomic, indexed): a scan never sees a half-written dataset
    publish_dataset(storage, catalog, proposal, name, doc)
    log.info("user %s stored %d uploaded SEM image(s) as %s/%s", user, len(paths), proposal, name)
    return Upload(dataset=f"{proposal}/{name}", paths=tuple(paths))


# -- suggestions ----------------------------------------------------------------------------------


def _db_error(catalog: Catalog, e: SQLAlchemyError) -> DassDataError:
    return DassDataError(f"the catalogue database {catalog.safe_url} failed: {e}")


def record_classifications(
    catalog: Catalog,
    owner: str,
    dataset: str,
    items: Sequence[Mapping[str, Any]],
    *,
    model: str,
    architecture: str,
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Keep the suggestions for images of ``dataset``; returns them with their new ids.

    Parameters
    ----------
    items : sequence of mapping
        Each with ``path`` (in the dataset), ``file`` (the name the user gave), ``category``
        (the suggestion), ``certainty`` and ``scores`` (category -> score).
    model, architecture : str
        The model that made the suggestions.
    """
    now = now or _utcnow()
    rows = [
        SemClassification(
            id=uuid.uuid4().hex,
            owner=owner,
            dataset_id=dataset,
            path=str(item["path"]),
            filename=str(item.get("file") or item["path"]),
            model=model,
            architecture=architecture,
            suggested=str(item["category"]),
            certainty=float(item["certainty"]),
            scores={str(k): float(v) for k, v in dict(item["scores"]).items()},
            created_at=now,
        )
        for item in items
    ]
    try:
        with catalog._session() as session, session.begin():
            session.add_all(rows)
    except SQLAlchemyError as e:
        raise _db_error(catalog, e) from e
    return [r.to_json() for r in rows]


def dataset_classifications(catalog: Catalog, dataset: str) -> list[dict[str, Any]]:
    """Every recorded classification of images of ``dataset``, oldest first."""
    from sqlalchemy import select

    try:
        with catalog._session() as session:
            rows = session.scalars(select(SemClassification).where(SemClassification.dataset_id == dataset)
                                   .order_by(SemClassification.created_at)).all()
            return [r.to_json() for r in rows]
    except SQLAlchemyError as e:
        raise _db_error(catalog, e) from e


def get_classification(catalog: Catalog, classification_id: str) -> dict[str, Any] | None:
    """The classification with this id (no access check), or None."""
    try:
        with catalog._session() as session:
            row = session.get(SemClassification, classification_id)
            return row.to_json() if row is not None else None
    except SQLAlchemyError as e:
        raise _db_error(catalog, e) from e


def visible_classification(catalog: Catalog, identity: Identity, classification_id: str) -> dict[str, Any]:
    """The classification if ``identity`` may see its dataset; else :class:`LabelError` 404."""
    record = get_classification(catalog, classification_id)
    if record is None or record["dataset"] not in catalog.visible(identity, [record["dataset"]]):
        # the same answer whether it is missing or hidden: never reveal existence
        raise LabelError(404, f"classification {classification_id} not found")
    return record


# -- labels ---------------------------------------------------------------------------------------


def sidecar_path(path: str) -> str:
    """The sidecar label file of an image path (``a/b.tif`` -> ``a/b.tif.label.json``)."""
    return path + SIDECAR_SUFFIX


def apply_label(metadata: Mapping[str, Any], path: str, label: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a ``dataset.json`` dict with ``label`` stored for the image ``path``.

    ``domain.labels[path]`` becomes ``label`` (replacing an earlier one) and
    ``domain.categories`` the sorted distinct categories of all labels. The input is not
    changed.

    Examples
    --------
    >>> md = apply_label({"title": "t"}, "a.png", {"category": "Tips"})
    >>> md["domain"]["categories"], md["domain"]["labels"]["a.png"]["category"]
    (['Tips'], 'Tips')
    """
    doc = json.loads(json.dumps(dict(metadata)))  # a deep copy of JSON data
    domain = doc.get("domain")
    if not isinstance(domain, dict):
        domain = {}
    labels = domain.get("labels")
    if not isinstance(labels, dict):
        labels = {}
    labels[path] = dict(label)
    domain["labels"] = labels
    domain["categories"] = sorted({str(v["category"]) for v in labels.values()
                                   if isinstance(v, dict) and v.get("category")})
    doc["domain"] = domain
    return doc


def confirm(
    catalog: Catalog,
    storage: Storage,
    identity: Identity,
    classification_id: str,
    category: str | None = None,
    *,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Confirm (``category=None``: accept the suggestion) or change the category of an image.

    Stores the label in the dataset's ``dataset.json`` (``domain.labels`` and
    ``domain.categories``), in the sidecar ``<image>.label.json`` and in the classification
    record, then re-indexes the dataset. Confirming again replaces the earlier label.

    Returns
    -------
    dict
        The label: ``category``, ``display_name``, ``suggested``, ``certainty`` (the
        suggestion's score), ``score`` (the chosen category's score), ``model``,
        ``architecture``, ``confirmed_by``, ``confirmed_at``, ``classification``, plus
        ``dataset``, ``path`` and ``sidecar``.

    Raises
    ------
    LabelError
        404 when the classification or its dataset is unknown or hidden from ``identity``;
        403 when ``identity`` sees the dataset but is not a member of its proposal; 422 for a
        category the model does not know (the message lists the allowed ids); 409 when the
        image is no longer in the dataset or its metadata is unreadable.
    dass.data.errors.DassDataError
        When the catalogue or the storage fails.
    """
    record = visible_classification(catalog, identity, classification_id)
    dataset = record["dataset"]
    proposal, _, name = dataset.partition("/")
    if not is_member(identity, proposal):
        raise LabelError(
            403,
            f"only members of proposal {proposal} may label its datasets; {identity.name} is not "
            "(ask the proposal's PI to add you to its group)",
        )
    allowed = list(record["scores"]) or list(CATEGORY_IDS)
    if category is None:
        category = record["suggested"]
    if not isinstance(category, str) or category not in allowed:
        raise LabelError(422, f"unknown category {category!r}; use one of: {', '.join(allowed)}")
    now = now or _utcnow()
    try:
        shown = display_name(category)
    except ValueError:  # a facility's own class, not one of the ten NFFA ids
        shown = category
    label = {
        "category": category,
        "display_name": shown,
        "suggested": record["suggested"],
        "certainty": record["certainty"],
        "score": float(record["scores"].get(category, 0.0)),
        "model": record["model"],
        "architecture": record["architecture"],
        "confirmed_by": identity.name,
        "confirmed_at": now.isoformat(),
        "classification": record["id"],
    }
    folder = storage.dataset_path(proposal, name)
    image = f"{folder}/{record['path']}"
    sidecar = {"schema": LABEL_SCHEMA, "dataset": dataset, "image": record["path"], **label,
               "scores": record["scores"]}

    def add_label(doc: dict[str, Any]) -> dict[str, Any]:
        if not storage.exists(image):  # under the dataset's lock: nothing is written then
            raise LabelError(409, f"the image {record['path']} is no longer in dataset {dataset}")
        return apply_label(doc, record["path"], label)

    def write_sidecar(_doc: dict[str, Any]) -> None:
        _write(storage, f"{folder}/{sidecar_path(record['path'])}",
               (json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))

    # lock, read, label, validate, sidecar, dataset.json, re-index: dass.data.metadata_writer
    try:
        update_dataset(catalog=catalog, storage=storage, dataset_id=dataset, change=add_label,
                       also_write=write_sidecar)
    except MetadataUpdateError as e:
        if e.stage == "current":
            raise LabelError(409, f"the metadata of dataset {dataset} is invalid, so it cannot be labelled: {e}") \
                from None
        raise LabelError(409, f"the label cannot be stored in dataset {dataset}: {e}") from None
    try:
        with catalog._session() as session, session.begin():
            row = session.get(SemClassification, record["id"])
            if row is not None:
                row.category, row.confirmed_by, row.confirmed_at = category, identity.name, now
    except SQLAlchemyError as e:
        raise _db_error(catalog, e) from e
    log.info("user %s labelled %s/%s as %s (suggested %s)", identity.name, dataset, record["path"],
             category, record["suggested"])
    return {**label, "dataset": dataset, "path": record["path"], "sidecar": sidecar_path(record["path"])}


def can_label(identity: Identity, record: Any, today: dt.date | None = None) -> bool:
    """Whether ``identity`` may label a catalogued dataset (sees it and is a member)."""
    return can_see(identity, record, today or dt.date.today()) and is_member(identity, record.proposal)

