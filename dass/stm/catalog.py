"""STM files' metadata into the catalogue: normalized scan settings and the preparation logbook.

:func:`annotate_dataset` reads every FAST movie (``.h5``), Nanonis image (``.sxm``) and
spectrum (``.dat``) of one repository dataset with the stack's readers, and stores in the
dataset's ``dataset.json`` (then re-indexes it):

- ``domain.stm_files``: file name -> the normalized metadata (points, frequencies, bias,
  setpoint, temperature, sample, comment, date; calibration 0 reported as "uncalibrated");
- ``domain.preparation``: file name -> the sample-preparation logbook steps matched to it (by
  sample name and/or time, see :mod:`dass.stm.logbook`), when a logbook is given;
- ``domain.stm_unreadable``: file name -> why it could not be read (nothing else is lost).

With ``write_h5`` the matched steps are also written into each FAST file as attributes of a
separate ``/dass_logbook`` group (the raw ``/data`` is never touched), and the file's checksum in
``dataset.json`` is updated. The command line is ``dass stm annotate PROPOSAL/DATASET``.

The metadata is written through :func:`dass.data.metadata_writer.update_dataset`: under the
dataset's lock (the service may label the same dataset meanwhile), validated against the
``dass.dataset/1`` schema before anything is written (FAST files included), atomically, then
re-indexed.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import StmFileError

__all__ = ["STM_SUFFIXES", "annotate_dataset", "describe_file"]

STM_SUFFIXES = (".h5", ".sxm", ".dat")


def describe_file(path: str | Path) -> dict[str, Any]:
    """The normalized metadata of one STM file (FAST ``.h5``, Nanonis ``.sxm`` or ``.dat``).

    Raises
    ------
    StmFileError
        The file cannot be read as its suffix says (the message names it and the problem).
    """
    from . import nanonis
    from .fast import open_fast

    suffix = Path(path).suffix.lower()
    if suffix == ".h5":
        with open_fast(path) as movie:
            return dict(movie.metadata)
    if suffix == ".sxm":
        return dict(nanonis.open_sxm(path).metadata)
    if suffix == ".dat":
        return dict(nanonis.open_dat(path).metadata)
    raise StmFileError(str(path), f"not an STM file dass reads (suffixes: {', '.join(STM_SUFFIXES)})")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def annotate_dataset(
    storage: Any,
    catalog: Any,
    dataset_id: str,
    *,
    logbook: Sequence[Any] | None = None,
    by: str = "auto",
    write_h5: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Store the STM files' metadata (and matched logbook steps) with one dataset; re-index it.

    Parameters
    ----------
    storage : dass.data.storage.Storage
        The repository.
    catalog : dass.data.catalog.Catalog or None
        Re-indexes the dataset afterwards (skipped when None).
    dataset_id : str
        ``"<proposal>/<name>"``.
    logbook : list of LogbookEntry, optional
        From :func:`dass.stm.logbook.read_logbook`.
    by : str
        How steps are matched to files (:func:`dass.stm.logbook.match_preparation`).
    write_h5 : bool
        Also write the matched steps into the FAST files (``/dass_logbook``).
    progress : callable, optional
        ``progress(done, total, file name)``.

    Returns
    -------
    dict
        ``{"dataset", "described", "unreadable", "matched", "written_h5"}`` (file name lists
        and counts).

    Raises
    ------
    ValueError
        A malformed dataset id, or a dataset without ``dataset.json`` or without STM files.
    dass.data.metadata_writer.MetadataUpdateError
        The dataset's ``dataset.json`` breaks the ``dass.dataset/1`` schema, or would with the
        new metadata (e.g. over 1 MiB): nothing is written, FAST files included.
    dass.data.errors.DassDataError
        The repository, the lock or the catalogue failed.
    """
    from ..data.metadata_writer import split_dataset_id, update_dataset
    from .logbook import match_preparation, write_preparation_h5

    proposal, name = split_dataset_id(dataset_id)
    fs = storage.fs
    folder = storage.dataset_path(proposal, name)
    meta_path = posixpath.join(folder, "dataset.json")
    if not fs.exists(meta_path):
        raise ValueError(f"{dataset_id}: no such dataset (no {meta_path})")
    names = sorted(
        posixpath.relpath(p, folder) for p in fs.find(folder)
        if p.lower().endswith(STM_SUFFIXES)
    )
    if not names:
        raise ValueError(f"{dataset_id} holds no STM file ({', '.join(STM_SUFFIXES)})")

    described: dict[str, Any] = {}
    unreadable: dict[str, str] = {}
    preparation: dict[str, list[dict[str, Any]]] = {}
    written: dict[str, Path] = {}  # FAST files with /dass_logbook, uploaded once the metadata is valid
    with tempfile.TemporaryDirectory(prefix="dass-stm-annotate-") as tmp:
        for n, rel in enumerate(names, 1):
            local = Path(tmp) / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(posixpath.join(folder, rel), str(local))
            try:
                md = describe_file(local)
            except (StmFileError, OSError) as e:
                unreadable[rel] = getattr(e, "problem", None) or str(e)
            else:
                described[rel] = _json_safe(md)
                if logbook:
                    steps = match_preparation(logbook, md, by=by)
                    if steps:
                        preparation[rel] = _json_safe([s.to_dict() for s in steps])
                        if write_h5 and rel.lower().endswith(".h5"):
                            write_preparation_h5(local, steps, source="dass stm annotate")
                            written[rel] = local
            if progress is not None:
                progress(n, len(names), rel)

        new_checksums = {rel: _sha256(local) for rel, local in written.items()}

        def annotate(metadata: dict[str, Any]) -> dict[str, Any]:
            domain = dict(metadata.get("domain") or {})
            domain["stm_files"] = described
            if unreadable:
                domain["stm_unreadable"] = unreadable
            else:
                domain.pop("stm_unreadable", None)
            if logbook is not None:
                domain["preparation"] = preparation
            metadata["domain"] = domain
            if written:
                checksums = dict(metadata.get("checksums") or {})
                checksums.update(new_checksums)
                metadata["checksums"] = checksums
            return metadata

        def upload_h5(_metadata: dict[str, Any]) -> None:
            for rel, local in written.items():
                with storage.translate_errors(f"writing {storage.url_of(posixpath.join(folder, rel))}"):
                    fs.put_file(str(local), posixpath.join(folder, rel))

        # the dataset's lock, validation before anything is written, atomic write, re-index
        update_dataset(storage, catalog, dataset_id, annotate, also_write=upload_h5)
    return {
        "dataset": dataset_id,
        "described": sorted(described),
        "unreadable": unreadable,
        "matched": {k: len(v) for k, v in preparation.items()},
        "written_h5": sorted(written),
    }


def _json_safe(value: Any) -> Any:
    """``value`` as plain JSON types (dates, NumPy numbers and the like as their text)."""
    return json.loads(json.dumps(value, default=str))
