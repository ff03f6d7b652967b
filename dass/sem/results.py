"""The outputs of classifying a dataset's images: the steps of the SEM classification job
(``sem/service/classify_dataset.ipynb``) after :meth:`dass.sem.classify.Classifier.classify_files`.

Torch-free: works on :class:`~dass.sem.classify.Outcome` objects (anything with ``name``,
``ok``, ``prediction`` and ``error``, and ``to_json()``) and a model's
:class:`~dass.sem.checkpoint.ModelInfo`; matplotlib only for the figures.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .summary import write_csv

__all__ = [
    "model_lines",
    "outcome_lines",
    "classification_rows",
    "write_classifications",
    "category_counts",
    "plot_classified",
    "plot_categories",
]


def model_lines(info: Any, device: str) -> str:
    """What a notebook says about the model it classifies with: name, architecture, input
    size and device; the data it was trained on; a warning when that data was synthetic."""
    trained_on = info.trained_on or {}
    lines = [
        f"model {info.name} ({info.architecture}, {info.input_size} px, on {device})",
        f"trained on {trained_on.get('url')} ({trained_on.get('n_images')} images)",
    ]
    if trained_on.get("synthetic"):
        lines.append(
            "WARNING: this model was trained on SYNTHETIC images; its categories mean nothing for real SEM data"
        )
    return "\n".join(lines)


def outcome_lines(outcomes: Iterable[Any]) -> str:
    """One line per outcome: ``name: category (certainty %)`` (plus ``; note: …`` for each reading
    note, such as 12-bit data scaled) or ``name: not classified: why``."""
    lines = []
    for outcome in outcomes:
        if outcome.ok:
            p = outcome.prediction
            line = f"{outcome.name}: {p.category} ({100 * p.certainty:.1f} %)"
            for note in getattr(outcome, "notes", None) or []:  # e.g. 12-bit data in a 16-bit TIFF, scaled
                line += f"; note: {note}"
            lines.append(line)
        else:
            lines.append(f"{outcome.name}: not classified: {outcome.error}")
    return "\n".join(lines)


def classification_rows(outcomes: Iterable[Any], classes: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of ``classifications.csv``, one per outcome.

    Returns
    -------
    list of dict
        ``file``, ``status`` (``ok`` or ``error``), ``category``, ``display_name``,
        ``certainty`` (6 decimals), ``reason`` (for unreadable files), then one score column
        per category of ``classes`` (6 decimals); the fields of an error row are empty but for
        ``file``, ``status`` and ``reason``.
    """
    rows = []
    for outcome in outcomes:
        row: dict[str, Any] = {"file": outcome.name, "status": "ok" if outcome.ok else "error"}
        if outcome.ok:
            p = outcome.prediction
            row.update(category=p.category, display_name=p.to_json().get("display_name", p.category),
                       certainty=round(p.certainty, 6), reason="")
            row.update({c: round(p.scores[c], 6) for c in classes})
        else:
            row.update(category="", display_name="", certainty="", reason=outcome.error)
            row.update({c: "" for c in classes})
        rows.append(row)
    return rows


def write_classifications(
    outcomes: Sequence[Any],
    info: Any,
    output_dir: str | os.PathLike[str],
    *,
    dataset_id: str,
    synthetic_data: bool,
) -> tuple[Path, Path]:
    """Write ``classifications.csv`` (:func:`classification_rows`) and ``classifications.json``
    (dataset, whether its data is synthetic, the model's description, every outcome) into
    ``output_dir``; return both paths."""
    if not outcomes:
        raise ValueError("no classification outcomes to write")
    output_dir = Path(output_dir)
    csv_path, json_path = output_dir / "classifications.csv", output_dir / "classifications.json"
    write_csv(classification_rows(outcomes, list(info.classes)), csv_path)
    json_path.write_text(json.dumps({
        "dataset": dataset_id,
        "synthetic_data": bool(synthetic_data),
        "model": info.to_json(),
        "results": [o.to_json() for o in outcomes],
    }, indent=2))
    return csv_path, json_path


def category_counts(outcomes: Iterable[Any], classes: Sequence[str]) -> dict[str, int]:
    """How many outcomes fell into each category of ``classes`` (0 for none), in that order."""
    counts = Counter(o.prediction.category for o in outcomes if o.ok)
    return {c: counts.get(c, 0) for c in classes}


def plot_classified(
    outcomes: Sequence[Any], images: Sequence[bytes], path: str | os.PathLike[str] | None = None
) -> Any:
    """A grid of thumbnails (five per row) of the classified images, each titled with its
    category and certainty; saved to ``path`` (80 dpi) when given. ``images`` holds the files'
    content in the order of ``outcomes``. Returns the figure, or None when nothing was
    classified."""
    import matplotlib.pyplot as plt

    from .io import read_sem

    good = [(o, raw) for o, raw in zip(outcomes, images) if o.ok]
    if not good:
        return None
    columns = min(5, len(good))
    rows = math.ceil(len(good) / columns)
    fig, axes = plt.subplots(rows, columns, squeeze=False, figsize=(3 * columns, 3 * rows))
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (outcome, raw) in zip(axes.ravel(), good):
        ax.imshow(read_sem(raw).image, cmap="gray")
        ax.set_title(f"{outcome.name}\n{outcome.prediction.category} {100 * outcome.prediction.certainty:.0f} %",
                     fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=80)
    return fig


def plot_categories(counts: Mapping[str, int], *, title: str = "", path: str | os.PathLike[str] | None = None) -> Any:
    """A horizontal bar chart of ``counts`` (:func:`category_counts`); saved to ``path``
    (80 dpi) when given. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh(list(counts), list(counts.values()))
    ax.set_xlabel("images")
    ax.set_title(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=80)
    return fig
