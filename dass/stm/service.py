"""The FAST-movie service: FAST file(s) in, processed MP4, PNG frames, ``.gsf`` and metadata out.

:func:`process_fast_dataset` is what the parameterized service notebook calls (the notebook
stays thin). For each FAST file it writes, under ``output_dir/<file stem>/``::

    <stem>.mp4            the processed movie (``.gif`` when no ffmpeg is available)
    frames/<stem>_<image><channel>.png
    gsf/<stem>_<image><channel>.gsf
    metadata.json         catalogue metadata of the file + recipe + processing results
    <stem>_processed.h5   (only with ``hdf5=True``) raw file + /processed group

and ``output_dir/summary.json`` with what it returns.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .export import _is_url, _join, _makedirs, _write_bytes, export_frames, export_gsf, export_hdf5, export_movie
from .fast import FastFileError, open_fast
from .process import Recipe, as_recipe, process

__all__ = ["find_fast_files", "process_fast_dataset", "process_with_fallback"]

log = logging.getLogger(__name__)


def find_fast_files(input_dir_or_files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """The ``.h5`` files of a folder (searched recursively, sorted), or the given file(s).

    Raises
    ------
    FileNotFoundError
        A named file or folder does not exist.
    """
    if isinstance(input_dir_or_files, (str, os.PathLike)):
        items = [input_dir_or_files]
    else:
        items = list(input_dir_or_files)
    found: list[str] = []
    for item in items:
        if _is_url(item):
            import fsspec

            fs, path = fsspec.core.url_to_fs(str(item))
            if not fs.exists(path):
                raise FileNotFoundError(f"{item}: no such file or folder")
            if fs.isdir(path):
                found += sorted(fs.unstrip_protocol(p) for p in fs.glob(path.rstrip("/") + "/**/*.h5"))
            else:
                found.append(str(item))
            continue
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"{item}: no such file or folder")
        found += sorted(str(p) for p in path.rglob("*.h5")) if path.is_dir() else [str(path)]
    return found


def _frame_indexes(frames: Sequence[int] | str | None, n: int) -> list[int]:
    if frames is None or frames == "none":
        return []
    if frames == "all":
        return list(range(n))
    if frames == "first":
        return [0] if n else []
    if isinstance(frames, str):
        raise ValueError(f"frames must be 'all', 'first', 'none' or a list of frame indexes, got {frames!r}")
    return [int(f) for f in frames]


def process_fast_dataset(
    input_dir_or_files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    *,
    recipe: Recipe | Mapping[str, Any] | str | None = None,
    frames: Sequence[int] | str | None = "all",
    fps: float | None = None,
    color_map: str = "hot",
    scaling: float = 2.0,
    hdf5: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Process every FAST file of a dataset folder (or the given files) and export the results.

    Parameters
    ----------
    input_dir_or_files : path, URL or list of them
        A folder (every ``.h5`` below it that is a FAST movie; other ``.h5`` files are listed
        as skipped with the reason) or FAST files (each must be a FAST movie).
    output_dir : path or URL
        Created if needed.
    recipe : Recipe, dict, JSON text or None
        The processing (:class:`dass.stm.process.Recipe`); ``None``: ``Recipe.standard()``.
    frames : "all", "first", "none" or list of int
        Frames written as PNG and ``.gsf``.
    fps : float, optional
        Playback rate of the movie; default: real time.
    color_map, scaling
        For the movie and the PNG frames.
    hdf5 : bool
        Also write the processed HDF5 (raw file + ``/processed``).
    progress : callable(done, total), optional
        Called after each file (processed or skipped).

    Returns
    -------
    dict
        ``{"recipe", "output_dir", "files": [...], "skipped": [...], "synthetic"}``; each file
        entry has ``source`` (as found), ``movie``, ``frames``, ``gsf``, ``metadata``, ``hdf5``
        (paths relative to ``output_dir``, ``/``-separated), ``num_frames``, ``frame_shape``,
        ``fps``, ``synthetic``. Also written as ``summary.json`` (so it stays valid when the
        folder is published elsewhere).

    Raises
    ------
    FastFileError
        A named file is not a FAST movie, or a folder holds none.
    RecipeError, ProcessingError
        From :func:`dass.stm.process.process`.
    """
    recipe = as_recipe(recipe)
    explicit = not (isinstance(input_dir_or_files, (str, os.PathLike))
                    and (_is_url(input_dir_or_files) or Path(input_dir_or_files).is_dir()))
    files = find_fast_files(input_dir_or_files)
    _makedirs(output_dir)
    # one spelling of the folder, so that written paths can be given relative to it
    base = str(output_dir).rstrip("/") if _is_url(output_dir) else str(Path(str(output_dir).removeprefix("file://")))

    def rel(target: str | None) -> str | None:
        return None if target is None else target[len(base) + 1:]

    entries: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for n, source in enumerate(files, 1):
        try:
            fast = open_fast(source)
        except FastFileError as exc:
            if explicit:
                raise
            log.warning("skipping %s: %s", source, exc.problem)
            skipped.append({"source": source, "reason": exc.problem})
            if progress is not None:
                progress(n, len(files))
            continue
        with fast:
            movie = process(fast, recipe)
        stem = Path(source.split("://", 1)[-1]).stem
        folder = _join(base, stem)
        _makedirs(folder)
        picked = [i for i in _frame_indexes(frames, len(movie)) if -len(movie) <= i < len(movie)]
        entry: dict[str, Any] = {
            "source": source,
            "num_frames": len(movie),
            "frame_shape": list(movie.frames.shape[1:]),
            "fps": movie.fps,
            "synthetic": movie.synthetic,
            "movie": rel(export_movie(movie, _join(folder, stem + ".mp4"), fps=fps,
                                      color_map=color_map, scaling=scaling)),
            "frames": [rel(f) for f in export_frames(movie, _join(folder, "frames"), frames=picked,
                                                     color_map=color_map, scaling=scaling)] if picked else [],
            "gsf": [rel(f) for f in export_gsf(movie, _join(folder, "gsf"), frames=picked)] if picked else [],
            "hdf5": rel(export_hdf5(movie, _join(folder, stem + "_processed.h5"))) if hdf5 else None,
        }
        md = {**movie.summary(), "metadata": movie.metadata}
        _write_bytes(_join(folder, "metadata.json"), json.dumps(md, indent=2, default=str).encode())
        entry["metadata"] = rel(_join(folder, "metadata.json"))
        entries.append(entry)
        if progress is not None:
            progress(n, len(files))
    if not entries:
        raise FastFileError(str(input_dir_or_files), "no FAST movie (.h5 with a 1-D /data stream) found"
                            + (f"; skipped: {skipped}" if skipped else ""))
    summary = {
        "recipe": recipe.to_dict(),
        "output_dir": str(output_dir),
        "files": entries,
        "skipped": skipped,
        "synthetic": any(e["synthetic"] for e in entries),
    }
    _write_bytes(_join(base, "summary.json"), json.dumps(summary, indent=2, default=str).encode())
    return summary


def process_with_fallback(
    folder: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    recipe: Mapping[str, Any] | None = None,
    say: Callable[[str], None] = print,
    **options: Any,
) -> dict[str, Any]:
    """:func:`process_fast_dataset` with ``recipe`` (the standard recipe when empty); when the
    standard recipe's creep correction is impossible (pyfastspm's creep fit needs a visible
    up/down shift), the standard recipe without creep correction, after saying so with ``say``.
    The summary records the recipe used. A given recipe that fails raises as it is.
    """
    from .process import ProcessingError

    try:
        return process_fast_dataset(folder, output_dir, recipe=recipe or None, **options)
    except ProcessingError as e:
        if recipe or e.step != "creep":
            raise
        say(f"creep correction is not possible here ({e.problem.split('.')[0]}); "
            "processing with the standard recipe without creep correction")
        return process_fast_dataset(folder, output_dir, recipe=Recipe.standard().without("creep"), **options)
