"""Export the SEM labels of a dataset as NeXus ``NXem`` (HDF5), for FAIR archives such as NOMAD.

One ``NXentry`` (``definition = NXem``) per dataset:

- ``identifier_experiment`` the dataset id, ``experiment_description`` what the file holds,
  ``start_time`` the earliest acquisition time the images record (else the dataset's creation
  date), ``profiling/program1`` dass and its version;
- ``sample`` (``NXsample``): ``name`` (the dataset title), ``is_simulation`` (true for
  SYNTHETIC data), and the two fields NXem requires that no SEM image records --
  ``atom_types`` and ``preparation_date`` -- from the caller or the dataset's
  ``domain.sample``; without them the export refuses and says how to give them;
- one ``NXnote`` per image (``note_0001``, ...): ``file_name`` (the image's path in the
  dataset), ``checksum`` + ``algorithm`` (its sha256 from ``dataset.json``), ``type``
  ``application/json``, ``description`` one readable line, ``author`` and ``date`` of the
  confirmation, and ``data``: the JSON of the confirmed label (``domain.labels``) and of the
  classifier's latest output for that image (model, suggestion, certainty, every score).

A classifier label belongs in an ``NXnote`` under the entry: undocumented groups would make
the file invalid. :func:`nxem_tree` is the pure builder (tested by value), :func:`write_nxem`
writes it with h5py; the test suite validates the result with pynxtools' NeXus validator.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dass.errors import DassError

__all__ = ["NexusExportError", "export_dataset", "export_filename", "nxem_tree", "write_nxem"]

#: File written into the dataset by default.
EXPORT_NAME = "labels.nxs"
_ISO_TZ = re.compile(r"(Z|[+-]\d\d:\d\d)$")


class NexusExportError(DassError, ValueError, status=422):
    """The labels cannot be exported as valid NXem; the message says what to give."""


def export_filename() -> str:
    """Name of the export inside the dataset folder (``labels.nxs``)."""
    return EXPORT_NAME


def _with_tz(value: str) -> str:
    """An ISO 8601 time with a zone offset (NX_DATE_TIME): a date becomes midnight UTC, a naive
    time (microscopes record local time without a zone) is written as UTC."""
    text = str(value).strip()
    if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
        return text + "T00:00:00+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise NexusExportError(f"{value!r} is not an ISO 8601 date or time (like 2026-03-14T10:00:00+01:00)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.isoformat()


def nxem_tree(
    metadata: Mapping[str, Any],
    dataset: str,
    *,
    classifications: Sequence[Mapping[str, Any]] = (),
    atom_types: str | Sequence[str] | None = None,
    preparation_date: str | None = None,
    program_version: str = "",
) -> dict[str, Any]:
    """The NXem content of a dataset's labels as a nested dict (a pure builder).

    Parameters
    ----------
    metadata : mapping
        The dataset's ``dataset.json`` (title, dates, checksums, ``domain.labels``,
        ``domain.instrument``, optional ``domain.sample``); not modified.
    dataset : str
        ``<proposal>/<name>``.
    classifications : sequence of mapping
        Classifier outputs (``dass.sem.labels`` records: ``path``, ``model``,
        ``architecture``, ``suggested``, ``certainty``, ``scores``, ``created``); the latest
        per image is exported.
    atom_types : str or sequence of str, optional
        Elements in the sample (``"Si,O"``); default ``domain.sample.atom_types``.
    preparation_date : str, optional
        ISO 8601 date/time the specimen was prepared; default ``domain.sample.preparation_date``.
    program_version : str
        The dass version recorded under ``profiling``.

    Returns
    -------
    dict
        ``{"entry1": {...}}``: groups are dicts with an ``"@NX_class"`` key, attributes keys
        starting with ``@``, fields other values (``bytes`` for NX_BINARY).

    Raises
    ------
    NexusExportError
        No labels and no classifier outputs to export, or ``atom_types`` /
        ``preparation_date`` unknown.
    """
    doc = json.loads(json.dumps(dict(metadata)))
    domain = doc.get("domain") if isinstance(doc.get("domain"), dict) else {}
    labels = domain.get("labels") if isinstance(domain.get("labels"), dict) else {}
    sample = domain.get("sample") if isinstance(domain.get("sample"), dict) else {}
    latest: dict[str, Mapping[str, Any]] = {}
    for c in sorted(classifications, key=lambda c: str(c.get("created") or "")):
        latest[str(c["path"])] = c
    paths = sorted(set(labels) | set(latest))
    if not paths:
        raise NexusExportError(f"dataset {dataset} has no SEM labels or classifications to export; "
                               "classify its images first (POST api/classify or dass sem classify)")
    atoms = atom_types if atom_types is not None else sample.get("atom_types")
    if isinstance(atoms, (list, tuple)):
        atoms = ",".join(str(a).strip() for a in atoms)
    prepared = preparation_date if preparation_date is not None else sample.get("preparation_date")
    missing = [n for n, v in (("atom_types", atoms), ("preparation_date", prepared)) if not v]
    if missing:
        raise NexusExportError(
            f"NXem requires sample/{' and sample/'.join(missing)}, which SEM images do not record; give "
            f"them (dass sem export-nexus {dataset} --atom-types Si,O --preparation-date 2026-03-14) or "
            f"set domain.sample.{missing[0]} in the dataset's dataset.json"
        )
    times = []
    for md in (domain.get("instrument") or {}).values():
        if isinstance(md, dict) and md.get("datetime"):
            times.append(str(md["datetime"]))
    created = (doc.get("dates") or {}).get("created")
    start = _with_tz(min(times)) if times else (_with_tz(created) if created else None)
    if start is None:
        raise NexusExportError(f"dataset {dataset}: no acquisition time in its images and no dates.created "
                               "in its dataset.json; NXem needs a start_time")
    keywords = " ".join([str(k) for k in doc.get("keywords") or []] + [str(doc.get("title") or "")]).lower()
    synthetic = bool(domain.get("synthetic")) or "synthetic" in keywords
    checksums = doc.get("checksums") if isinstance(doc.get("checksums"), dict) else {}
    entry: dict[str, Any] = {
        "@NX_class": "NXentry",
        "definition": "NXem",
        "identifier_experiment": dataset,
        "experiment_description": (f"SEM image categories (NFFA-Europe classes) of dataset {dataset}: labels "
                                   "confirmed by people and the classifier's outputs, one NXnote per image "
                                   "(data: JSON)."),
        "start_time": start,
        "profiling": {"@NX_class": "NXcs_profiling",
                      "program1": {"@NX_class": "NXprogram", "program": "dass",
                                   "program@version": program_version or "unknown"}},
        "sample": {"@NX_class": "NXsample", "name": str(doc.get("title") or dataset),
                   "is_simulation": synthetic, "atom_types": str(atoms),
                   "preparation_date": _with_tz(str(prepared))},
    }
    for i, path in enumerate(paths, 1):
        label = labels.get(path) if isinstance(labels.get(path), dict) else None
        output = latest.get(path)
        record = {"image": path, "label": label, "classifier": None}
        if output is not None:
            record["classifier"] = {k: output.get(k) for k in ("model", "architecture", "suggested", "certainty",
                                                               "scores", "created", "id")}
        if label:
            text = (f"{path}: {label.get('category')} confirmed by {label.get('confirmed_by')} "
                    f"(suggested {label.get('suggested')} by {label.get('model')})")
        else:
            text = (f"{path}: suggested {output['suggested']} by {output['model']} "
                    f"(certainty {float(output['certainty']):.3f}), not confirmed")
        note: dict[str, Any] = {"@NX_class": "NXnote", "type": "application/json", "file_name": path,
                                "description": text,
                                "data": json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8")}
        digest = checksums.get(path)
        if digest:
            algorithm, _, value = str(digest).partition(":")
            note["checksum"], note["algorithm"] = (value, algorithm) if value else (algorithm, "sha256")
        if label:
            note["author"] = str(label.get("confirmed_by"))
            if label.get("confirmed_at"):
                note["date"] = _with_tz(str(label["confirmed_at"]))
        entry[f"note_{i:04d}"] = note
    return {"entry1": entry}


def _write_group(group: Any, tree: Mapping[str, Any]) -> None:
    for key, value in tree.items():
        if key.startswith("@"):
            group.attrs[key[1:]] = value
        elif "@" in key:
            continue  # attribute of a field: written with the field
        elif isinstance(value, Mapping):
            _write_group(group.create_group(key), value)
        else:
            if isinstance(value, bytes):
                group[key] = np.bytes_(value)
            else:
                group[key] = value
            for attr_key, attr_value in tree.items():
                if attr_key.startswith(key + "@"):
                    group[key].attrs[attr_key.split("@", 1)[1]] = attr_value


def write_nxem(tree: Mapping[str, Any], target: str | Any | None = None) -> bytes | None:
    """Write an :func:`nxem_tree` as a NeXus HDF5 file.

    Parameters
    ----------
    tree : mapping
        What :func:`nxem_tree` returned.
    target : str, path or binary file-like, optional
        Where to write; None: return the file's bytes.
    """
    import h5py

    buf = io.BytesIO() if target is None else None
    with h5py.File(buf if buf is not None else target, "w") as f:
        f.attrs["default"] = next(iter(tree))
        f.attrs["creator"] = "dass"
        _write_group(f, tree)
    return buf.getvalue() if buf is not None else None


def export_dataset(storage: Any, catalog: Any, dataset: str, *, out: str | None = None,
                   atom_types: str | Sequence[str] | None = None, preparation_date: str | None = None) -> str:
    """Export a dataset's labels and classifier outputs as NXem; returns where it was written.

    Parameters
    ----------
    storage : dass.data.storage.Storage
    catalog : dass.data.catalog.Catalog
    dataset : str
        ``<proposal>/<name>``.
    out : str, optional
        Local path or fsspec URL; default ``labels.nxs`` inside the dataset folder.
    atom_types, preparation_date
        As for :func:`nxem_tree`.

    Raises
    ------
    NexusExportError
        Unknown dataset, nothing to export, or missing sample information.
    """
    from dass import __version__
    from dass.data.errors import DassDataError
    from dass.data.metadata import MAX_METADATA_BYTES, METADATA_FILE
    from dass.sem.labels import dataset_classifications

    proposal, _, name = dataset.partition("/")
    if not proposal or not name:
        raise NexusExportError(f"give the dataset as <proposal>/<name>, not {dataset!r}")
    folder = storage.dataset_path(proposal, name)
    try:
        doc = json.loads(storage.read_bytes(f"{folder}/{METADATA_FILE}", MAX_METADATA_BYTES))
    except DassDataError as e:
        raise NexusExportError(f"dataset {dataset} cannot be read: {e}") from None
    tree = nxem_tree(doc, dataset, classifications=dataset_classifications(catalog, dataset),
                     atom_types=atom_types, preparation_date=preparation_date, program_version=__version__)
    data = write_nxem(tree)
    if out is None:
        path = f"{folder}/{EXPORT_NAME}"
        with storage.translate_errors(f"writing {storage.url_of(path)}"):
            storage.fs.pipe_file(path, data)
        return storage.url_of(path)
    import fsspec

    with fsspec.open(out, "wb") as fh:
        fh.write(data)
    return out
