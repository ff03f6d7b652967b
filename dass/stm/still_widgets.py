"""``ImageApp``: an ipywidgets viewer for still STM images with live corrections.

Pick a Nanonis ``.sxm`` or an Omicron MATRIX image from the session's datasets (or type a path),
choose channel and direction, tick the corrections (plane fit, row alignment, fix zero, FFT
notch) and see before and after side by side; export the result as PNG or Gwyddion ``.gsf``.

All logic lives in plain methods (:meth:`ImageApp.load`, :meth:`ImageApp.steps`,
:meth:`ImageApp.update`, :meth:`ImageApp.export_png`, :meth:`ImageApp.export_gsf`) that the
widgets call and tests call directly; the science is :mod:`dass.stm.still`.

    from dass.stm.still_widgets import ImageApp
    ImageApp()                      # the datasets chosen at spawn
    ImageApp("scan_058.sxm")        # one file
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import StmFileError
from .still import StillImage, apply, gsf_bytes, png_bytes, validate_steps

__all__ = ["ImageApp", "find_images"]

log = logging.getLogger(__name__)

_PATTERNS = ("*.sxm", "*_mtrx")
_VIEW_DPI = 72  # on-screen previews; exports use png_bytes' default


def _is_image_file(path: Path) -> bool:
    if path.suffix == ".sxm":
        return True
    return path.name.endswith("_mtrx") and "(" not in path.name  # MATRIX curves are "I(V)_mtrx"


def find_images(datasets: Iterable[Any]) -> list[tuple[str, Path]]:
    """``(label, path)`` of every ``.sxm`` and MATRIX image file in the datasets' local mounts.

    Parameters
    ----------
    datasets : iterable of dass.data.Dataset
        Each needs ``id`` and ``path`` (the mount folder); a dataset whose folder is missing is
        skipped.
    """
    found = []
    for ds in datasets:
        root = Path(ds.path)
        if not root.is_dir():
            log.info("dataset %s: mount %s not found, skipped", getattr(ds, "id", "?"), root)
            continue
        for pattern in _PATTERNS:
            for path in sorted(root.rglob(pattern)):
                if path.is_file() and _is_image_file(path):
                    found.append((f"{ds.id}/{path.relative_to(root).as_posix()}", path))
    return found


def _open(path: Path) -> tuple[Any, list[str], list[str]]:
    """The opened file, its channels and its directions."""
    if path.suffix == ".sxm":
        from .nanonis import DIRECTIONS, open_sxm

        sxm = open_sxm(path)
        return sxm, sxm.channel_names, list(DIRECTIONS)
    from .matrix import open_matrix

    mtrx = open_matrix(path)
    return mtrx, [mtrx.metadata["channel"]], list(mtrx.traces)


class ImageApp:
    """A still-image viewer with toggleable corrections (see the module docstring).

    Parameters
    ----------
    source : str or path-like, optional
        A file to open at once.
    datasets : list of dass.data.Dataset, optional
        Where to look for images; default ``dass.data.datasets()`` (none outside a session).
    progress : callable, optional
        ``progress(done, total, step)`` after each correction (passed to
        :func:`dass.stm.still.apply`).

    Attributes
    ----------
    raw : StillImage or None
        The selected channel and direction as read.
    processed : StillImage or None
        ``raw`` after the ticked corrections.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | None = None,
        *,
        datasets: Sequence[Any] | None = None,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> None:
        import ipywidgets as w

        self.progress = progress
        self.file: Any = None
        self.path: Path | None = None
        self.raw: StillImage | None = None
        self.processed: StillImage | None = None
        if datasets is None:
            datasets = self._session_datasets()
        self.files = find_images(datasets)

        self.file_select = w.Dropdown(
            options=[("— choose an image —", None)] + [(label, str(p)) for label, p in self.files],
            description="Dataset file", layout=w.Layout(width="60%"),
        )
        self.path_text = w.Text(placeholder="or a path to .sxm / *_mtrx", layout=w.Layout(width="40%"))
        self.open_button = w.Button(description="Open", icon="folder-open")
        self.channel_select = w.Dropdown(description="Channel")
        self.direction_select = w.Dropdown(description="Direction")
        self.plane = w.Checkbox(description="plane fit", value=False)
        self.rows = w.Checkbox(description="align rows", value=False)
        self.row_method = w.Dropdown(options=["median", "mean", "polynomial"], value="median",
                                     layout=w.Layout(width="120px"))
        self.row_order = w.BoundedIntText(value=1, min=0, max=10, description="order",
                                          layout=w.Layout(width="130px"))
        self.zero = w.Checkbox(description="fix zero", value=False)
        self.notch = w.Checkbox(description="FFT notch (auto)", value=False)
        self.notch_count = w.BoundedIntText(value=2, min=1, max=20, description="peaks",
                                            layout=w.Layout(width="130px"))
        self.before_view = w.Image(format="png", layout=w.Layout(width="48%"))
        self.after_view = w.Image(format="png", layout=w.Layout(width="48%"))
        self.export_dir = w.Text(value=str(Path.home() / "stm-exports"), description="Export to")
        self.png_button = w.Button(description="PNG", icon="download")
        self.gsf_button = w.Button(description=".gsf", icon="download")
        self.status = w.HTML()

        self.file_select.observe(self._on_file, names="value")
        self.open_button.on_click(lambda _: self._guard(lambda: self.load(self.path_text.value)))
        for control in (self.channel_select, self.direction_select, self.plane, self.rows,
                        self.row_method, self.row_order, self.zero, self.notch, self.notch_count):
            control.observe(lambda _: self._guard(self._refresh), names="value")
        self.png_button.on_click(lambda _: self._guard(lambda: self._export("png")))
        self.gsf_button.on_click(lambda _: self._guard(lambda: self._export("gsf")))

        self.widget = w.VBox([
            w.HBox([self.file_select, self.path_text, self.open_button]),
            w.HBox([self.channel_select, self.direction_select]),
            w.HBox([self.plane, self.rows, self.row_method, self.row_order, self.zero,
                    self.notch, self.notch_count]),
            w.HBox([self.before_view, self.after_view]),
            w.HBox([self.export_dir, self.png_button, self.gsf_button]),
            self.status,
        ])
        if source is not None:
            self.load(source)

    # -- plain, tested methods ----------------------------------------------------------------

    @staticmethod
    def _session_datasets() -> list[Any]:
        from dass.data import DassDataError, datasets

        try:
            return list(datasets())
        except DassDataError as exc:
            log.info("no session datasets: %s", exc)
            return []

    def load(self, source: str | os.PathLike[str]) -> None:
        """Open a ``.sxm`` or MATRIX file and show its first channel.

        Raises
        ------
        StmFileError
            A file that cannot be read (see :func:`dass.stm.nanonis.open_sxm`,
            :func:`dass.stm.matrix.open_matrix`); ``ValueError`` for an unsupported type.
        """
        path = Path(os.fspath(source)).expanduser()
        if not str(source).strip():
            raise ValueError("give a path to a .sxm or MATRIX *_mtrx file")
        if not _is_image_file(path):
            raise ValueError(f"{path}: not a still image this app opens (.sxm or MATRIX *_mtrx image)")
        opened, channels, directions = _open(path)
        self.file, self.path = opened, path
        self._quiet = True
        try:
            self.channel_select.options = channels
            self.channel_select.value = "Z" if "Z" in channels else channels[0]
            self.direction_select.options = directions
            self.direction_select.value = directions[0]
        finally:
            self._quiet = False
        self._refresh()

    def select(self, channel: str, direction: str) -> StillImage:
        """Choose channel and direction; returns the raw image (and refreshes the views)."""
        self._quiet = True
        try:
            self.channel_select.value = channel
            self.direction_select.value = direction
        finally:
            self._quiet = False
        self._refresh()
        assert self.raw is not None
        return self.raw

    def steps(self) -> list[dict[str, Any]]:
        """The ticked corrections as a :func:`dass.stm.still.apply` step list (in the fixed
        order plane fit → align rows → FFT notch → fix zero)."""
        steps: list[dict[str, Any]] = []
        if self.plane.value:
            steps.append({"step": "plane_fit"})
        if self.rows.value:
            step: dict[str, Any] = {"step": "align_rows", "method": self.row_method.value}
            if self.row_method.value == "polynomial":
                step["order"] = int(self.row_order.value)
            steps.append(step)
        if self.notch.value:
            steps.append({"step": "fft_notch", "count": int(self.notch_count.value)})
        if self.zero.value:
            steps.append({"step": "fix_zero"})
        return validate_steps(steps)

    def update(self) -> StillImage:
        """Read the chosen channel/direction, apply :meth:`steps`, redraw; returns the result."""
        if self.file is None:
            raise ValueError("no image opened yet: choose a file or call load(path)")
        key = (id(self.file), self.channel_select.value, self.direction_select.value)
        if key != self._raw_key or self.raw is None:  # re-read and redraw "before" only on change
            self.raw = self.file.image(self.channel_select.value, self.direction_select.value)
            self.before_view.value = png_bytes(self.raw, dpi=_VIEW_DPI)
            self._raw_key = key
        self.processed = apply(self.raw, self.steps(), progress=self.progress)
        self.after_view.value = png_bytes(self.processed, dpi=_VIEW_DPI)
        done = ", ".join(s["step"] for s in self.processed.metadata.get("processing", [])) or "none"
        self.status.value = f"<b>{self.path.name if self.path else ''}</b>: corrections: {done}"
        return self.processed

    def export_png(self, target: str | os.PathLike[str]) -> Path:
        """Write the processed image as a PNG figure; returns the path."""
        return self._write(target, ".png", png_bytes)

    def export_gsf(self, target: str | os.PathLike[str]) -> Path:
        """Write the processed image as a Gwyddion ``.gsf``; returns the path."""
        return self._write(target, ".gsf", gsf_bytes)

    # -- internals ------------------------------------------------------------------------------

    _quiet = False
    _raw_key: tuple[Any, ...] | None = None

    def _write(self, target: str | os.PathLike[str], suffix: str, render: Callable[[StillImage], bytes]) -> Path:
        if self.processed is None:
            raise ValueError("nothing to export: open an image first")
        path = Path(target).expanduser()
        if path.suffix.lower() != suffix:
            path = path.with_name(path.name + suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(render(self.processed))
        self.status.value = f"wrote {path}"
        return path

    def _export(self, kind: str) -> Path:
        assert self.path is not None and self.processed is not None
        image = self.processed
        stem = f"{self.path.stem}_{image.channel}_{image.direction.replace('/', '-')}"
        target = Path(self.export_dir.value).expanduser() / stem
        return self.export_png(target) if kind == "png" else self.export_gsf(target)

    def _refresh(self) -> None:
        if self._quiet or self.file is None:
            return
        self.update()

    def _on_file(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._guard(lambda: self.load(change["new"]))

    def _guard(self, action: Callable[[], Any]) -> None:
        """Run a widget action; show a readable error in the status line instead of a traceback."""
        try:
            action()
        except (StmFileError, ValueError, FileNotFoundError) as exc:
            self.status.value = f"<span style='color:#b00'>{_escape(str(exc))}</span>"

    def _ipython_display_(self) -> None:  # pragma: no cover - needs a notebook front end
        from IPython.display import display

        display(self.widget)


def _escape(text: str) -> str:
    import html

    return html.escape(text)
