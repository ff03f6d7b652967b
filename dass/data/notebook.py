"""Small helpers the stacks' notebooks share: files across the session's datasets, a listing
of them, their content, and a progress bar.

The notebooks (``dass/notebooks/``) hold only parameters, calls and display; what they do with
more than a line or two lives in tested functions, these and the stacks' own
(:mod:`dass.sem.summary`, :mod:`dass.sem.results`, :mod:`dass.kmap.overview`,
:mod:`dass.stm.overview`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["find_files", "file_names", "files_overview", "read_files", "progress_bar", "ProgressBar"]

SYNTHETIC_NOTE = "(synthetic demo data, not a measurement)"


def _matches(name: str, suffixes: Sequence[str]) -> bool:
    return name.lower().endswith(tuple(s.lower() for s in suffixes))


def find_files(datasets: Iterable[Any], suffixes: Sequence[str] | str) -> list[tuple[Any, str]]:
    """Every file of ``datasets`` whose name ends with one of ``suffixes``.

    Parameters
    ----------
    datasets : iterable of dass.data.Dataset
        The session's datasets (``dass.data.datasets()``) or some of them.
    suffixes : str or sequence of str
        Name endings, compared without regard to case (``".tif"`` finds ``A.TIF``; a longer
        ending such as ``"_master.h5"`` works too).

    Returns
    -------
    list of (Dataset, str)
        The dataset and the file's path relative to it, in dataset order and then name order.
    """
    suffixes = (suffixes,) if isinstance(suffixes, str) else tuple(suffixes)
    if not suffixes:
        raise ValueError("find_files needs at least one suffix, e.g. '.h5'")
    return [(d, name) for d in datasets for name in sorted(d.fs.find("")) if _matches(name, suffixes)]


def file_names(dataset: Any, suffixes: Sequence[str] | str, *, what: str, fix: str) -> list[str]:
    """The files of one dataset whose name ends with one of ``suffixes``, in name order.

    Parameters
    ----------
    dataset : dass.data.Dataset
    suffixes : str or sequence of str
        As for :func:`find_files`.
    what, fix : str
        For the message when there is none: ``"<id> holds no <what>: <fix>"``.

    Raises
    ------
    ValueError
        When the dataset holds no such file.
    """
    names = [name for _, name in find_files([dataset], suffixes)]
    if not names:
        raise ValueError(f"{dataset.id} holds no {what}: {fix}")
    return names


def files_overview(datasets: Iterable[Any]) -> str:
    """A text listing of ``datasets``: each one's id and title, a note for synthetic data
    (``"synthetic": true`` in its metadata), and the names at its top level, sorted."""
    lines = []
    for d in datasets:
        lines.append(f"{d.id}: {d.title}")
        if d.metadata.get("synthetic"):
            lines.append(f"    {SYNTHETIC_NOTE}")
        lines += [f"     {name}" for name in sorted(d.fs.ls("", detail=False))]
    return "\n".join(lines)


def read_files(dataset: Any, names: Iterable[str]) -> list[bytes]:
    """The content of each of ``names`` (paths relative to ``dataset``), in order."""
    out = []
    for name in names:
        with dataset.open(name) as f:
            out.append(f.read())
    return out


class ProgressBar:
    """A tqdm bar (the notebook flavour) with the progress callbacks of dass' functions.

    ``bar.steps`` is a ``progress(done, total, message="")`` callback (SEM training and
    classification, STM movies); ``bar.fraction`` a ``progress(fraction, stage)`` one (KMAP).
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, *, desc: str, unit: str = "step", total: int | None = None) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit=unit)

    def steps(self, done: int, total: int, message: str = "") -> None:
        self.bar.total = total
        self.bar.n = done
        if message:
            self.bar.set_postfix_str(message[:60], refresh=False)
        self.bar.refresh()

    def fraction(self, fraction: float, stage: str = "") -> None:
        self.bar.n = round(self.bar.total * fraction) if self.bar.total else fraction
        if stage:
            self.bar.set_postfix_str(stage[:60], refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(desc: str, *, unit: str = "step", total: int | None = None) -> ProgressBar:
    """A :class:`ProgressBar` titled ``desc``; ``total=100`` with ``unit="%"`` for fractions."""
    return ProgressBar(desc=desc, unit=unit, total=total)
