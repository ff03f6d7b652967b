"""The interactive FAST-movie app (ipywidgets): pick a movie, play it, switch channels, toggle
pyfastspm's processing steps with a live preview, process the whole movie, export.

:class:`MovieApp` lays out:

* a movie chooser: the ``.h5`` files of the session's mounted datasets
  (:func:`dass.data.datasets`), or a path typed in, and **Load**;
* **Play** linked to a frame slider, and the channel buttons (:data:`dass.stm.CHANNELS`);
* one checkbox per processing step (:data:`dass.stm.process.STEP_ORDER`, default parameters
  of :data:`dass.stm.process.STEPS`): the frame shown is processed with the ticked steps
  (:func:`dass.stm.process.process` restricted to the current image, cached; the movie after
  phase and FFT and the creep grid are kept in a :class:`~dass.stm.process.StageCache` and
  the interpolation matrix in :mod:`dass.stm.engine`'s cache, so ticking a later step only
  redoes that image's frame steps);
* **Process movie** (all frames, with a progress bar), then the slider plays processed frames;
* export buttons (MP4, PNG, GSF, HDF5) writing into the output folder.

All logic is in methods (:meth:`MovieApp.load`, :meth:`MovieApp.set_channel`,
:meth:`MovieApp.set_step`, :meth:`MovieApp.frame`, :meth:`MovieApp.frame_png`,
:meth:`MovieApp.process_movie`, :meth:`MovieApp.export`) that tests call without a browser;
the widgets only call them.

    from dass.stm.widgets import MovieApp
    app = MovieApp()
    app.widget          # display it
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


from .fast import CHANNELS, FastFile, FastFileError, is_fast_movie, open_fast
from .process import STEP_ORDER, ProcessedMovie, Recipe, RecipeError, StageCache, process

__all__ = ["MovieApp", "find_fast_movies", "first_look", "session_datasets"]

log = logging.getLogger(__name__)

EXPORTS = ("mp4", "png", "gsf", "hdf5")


def find_fast_movies(datasets: Sequence[Any], *, limit: int = 200) -> list[tuple[str, str]]:
    """``(label, path)`` of the FAST movies (:func:`~dass.stm.fast.is_fast_movie`) under the
    datasets' mounts, sorted per dataset; other ``.h5`` files (KMAP scans, ...) are not offered."""
    found: list[tuple[str, str]] = []
    for ds in datasets:
        base = Path(ds.path)
        if not base.is_dir():
            continue
        for path in sorted(p for p in base.rglob("*.h5") if is_fast_movie(p)):
            found.append((f"{ds.id}: {path.relative_to(base)}", str(path)))
            if len(found) >= limit:
                return found
    return found


#: Where the landing notebook sends a person without a FAST movie.
DEMO_FAST_DATASET = "p-2026-002/stm-au111-fast"


def session_datasets(manifest: str | os.PathLike[str] | None = None) -> tuple[list[Any], str]:
    """The datasets mounted in this session and, when there are none, what to do.

    :func:`dass.data.datasets` raises outside a session (no manifest); the landing notebook
    uses this instead so that it runs to the end anywhere.

    Returns
    -------
    (datasets, str)
        The session's datasets (what :func:`dass.data.datasets` returns; an empty list outside
        a session) and a sentence for a person (``""`` when datasets are there).
    """
    from dass.data.errors import DassDataError
    from dass.data.session import datasets

    try:
        found = datasets(manifest)  # the session's collection (shown as a table in a notebook)
    except DassDataError as exc:
        return [], (f"No datasets are mounted here ({exc}). To look at FAST movies, start a "
                    f"session of the stm stack with a FAST dataset (in the demo repository: "
                    f"{DEMO_FAST_DATASET}), or type the path of a FAST .h5 file in the movie app.")
    if not found:
        return [], (f"This session has no datasets. Start a session of the stm stack with a FAST "
                    f"dataset (in the demo repository: {DEMO_FAST_DATASET}), or type the path of a "
                    "FAST .h5 file in the movie app.")
    return found, ""


def first_look(datasets: Sequence[Any]) -> str:
    """The landing notebook's first look: the attributes of the first FAST movie among the
    datasets (and how many images its stream holds), or what to do when there is none."""
    import h5py

    movies = find_fast_movies(datasets, limit=1)
    if not movies:
        return (f"No FAST movie among the mounted datasets. Start a session of the stm stack with "
                f"a FAST dataset (in the demo repository: {DEMO_FAST_DATASET}) to see one here, or "
                "type the path of a FAST .h5 file in the movie app.")
    label, path = movies[0]
    with h5py.File(path, "r") as h5:
        attrs = dict(h5["data"].attrs)
        length = int(h5["data"].shape[0])
    from .fast import _plain

    lines = [f"{label}: /data has {length} samples"]
    lines += [f"    {key} = {_plain(attrs[key])}" for key in sorted(attrs)]
    per_image = 4 * int(attrs["Scanner.X_Points"]) * int(attrs["Scanner.Y_Points"])
    # the number of images comes from the data length, not from Acquisition.NumImages
    lines.append(f"images in the stream: {length // per_image} of {per_image} samples each")
    return "\n".join(lines)


class MovieApp:
    """The FAST-movie notebook app; ``app.widget`` is the ipywidgets box to display.

    Parameters
    ----------
    path : path-like or URL, optional
        A FAST file to load at once (also added to the choices).
    datasets : list of dass Dataset, optional
        Where to look for movies; default :func:`dass.data.datasets` (none without a manifest).
    recipe : Recipe or dict, optional
        Steps ticked at the start (default: none) and the channels.
    output_dir : path or URL
        Where :meth:`export` writes (default ``stm_output``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        datasets: Sequence[Any] | None = None,
        recipe: Recipe | dict[str, Any] | None = None,
        output_dir: str | os.PathLike[str] = "stm_output",
    ) -> None:
        import ipywidgets as w

        self.log = log
        self.fast: FastFile | None = None
        self.recipe = Recipe.from_dict(recipe) if isinstance(recipe, dict) else (recipe or Recipe("udi"))
        self.raw: ProcessedMovie | None = None
        self.processed: ProcessedMovie | None = None
        self._previews: dict[tuple[str, int], ProcessedMovie] = {}
        #: the movie after phase and FFT and the creep grid, reused by every preview and by
        #: Process movie while their parameters stay the same (one per opened file)
        self.stages = StageCache()
        self._datasets = datasets

        choices = self.movie_choices()
        if path is not None:
            choices.insert(0, (f"{Path(str(path)).name} (given)", str(path)))
        style = {"description_width": "initial"}
        self.chooser = w.Dropdown(options=choices or [("(no .h5 file found: type a path)", "")],
                                  description="Movie", layout=w.Layout(width="60%"), style=style)
        self.path_text = w.Text(placeholder="…/movie.h5 or a URL (overrides the list)",
                                description="or path", layout=w.Layout(width="60%"), style=style)
        self.load_button = w.Button(description="Load", icon="folder-open")
        self.play = w.Play(value=0, min=0, max=0, interval=100, description="Play")
        self.slider = w.IntSlider(value=0, min=0, max=0, description="Frame", continuous_update=True)
        w.jslink((self.play, "value"), (self.slider, "value"))
        self.channel = w.ToggleButtons(options=list(CHANNELS), value=self.recipe.channels,
                                       description="Channels", style=style)
        self.steps = {name: w.Checkbox(value=name in self.recipe.names, description=name, indent=False,
                                       layout=w.Layout(width="130px")) for name in STEP_ORDER}
        self.image = w.Image(format="png", layout=w.Layout(max_width="520px"))
        self.process_button = w.Button(description="Process movie", icon="cogs")
        self.progress = w.IntProgress(value=0, min=0, max=1, description="")
        self.output_text = w.Text(value=str(output_dir), description="Output folder", style=style,
                                  layout=w.Layout(width="60%"))
        self.export_buttons = {kind: w.Button(description=kind.upper(), icon="download") for kind in EXPORTS}
        self.status = w.HTML(value="")

        self.load_button.on_click(lambda _: self._guard(self.load, self._chosen_path()))
        self.slider.observe(lambda ch: self._guard(self.show, ch["new"]), names="value")
        self.channel.observe(lambda ch: self._guard(self._on_channel, ch["new"]), names="value")
        for name, box in self.steps.items():
            box.observe(lambda ch, name=name: self._guard(self._on_box, name, ch["new"]), names="value")
        self.process_button.on_click(lambda _: self._guard(self.process_movie))
        for kind, button in self.export_buttons.items():
            button.on_click(lambda _, kind=kind: self._guard(self.export, kind))

        self.widget = w.VBox([
            w.HBox([self.chooser, self.load_button]),
            self.path_text,
            w.HBox([self.play, self.slider]),
            self.channel,
            w.HBox(list(self.steps.values()), layout=w.Layout(flex_flow="row wrap")),
            self.image,
            w.HBox([self.process_button, self.progress]),
            w.HBox([self.output_text, *self.export_buttons.values()]),
            self.status,
        ])
        if path is not None:
            self.load(path)

    # -- choosing and loading ----------------------------------------------------------------

    def movie_choices(self) -> list[tuple[str, str]]:
        """``(label, path)`` of the FAST movies in the session's datasets."""
        datasets = self._datasets
        if datasets is None:
            from dass.data import DassDataError, datasets as session_datasets

            try:
                datasets = session_datasets()
            except DassDataError as exc:
                self.log.info("no session datasets: %s", exc)
                datasets = []
        return find_fast_movies(datasets)

    def _chosen_path(self) -> str:
        return self.path_text.value.strip() or self.chooser.value

    def load(self, path: str | os.PathLike[str]) -> FastFile:
        """Open a FAST movie (:func:`dass.stm.open_fast`) and show its first frame."""
        if not str(path):
            raise FastFileError("(nothing chosen)", "choose a movie or type a path")
        fast = open_fast(path)
        if self.fast is not None:
            self.fast.close()
        self.fast = fast
        self.stages = StageCache()
        self._reset()
        md = fast.metadata
        self._say(f"{fast.path}: {md['num_images']} images of {md['points_x']} x {md['points_y']} px"
                  + (" — SYNTHETIC" if fast.metadata.get("attributes", {}).get("ExperimentInfo.Synthetic") else ""))
        return fast

    def _reset(self) -> None:
        """New file or channels: raw frames again, previews dropped."""
        assert self.fast is not None
        self.raw = process(self.fast, Recipe(self.recipe.channels))
        self.processed = None
        self._previews.clear()
        n = len(self.raw)
        self.play.max = self.slider.max = n - 1
        self.play.interval = max(20, int(round(1000.0 / self.raw.fps)))
        self.slider.value = min(self.slider.value, n - 1)
        self.show(self.slider.value)

    # -- settings --------------------------------------------------------------------------------

    def set_channel(self, channels: str) -> None:
        """Switch the channels (``"udi"``, ``"uf"``, …)."""
        self.recipe = self.recipe.replace(channels=channels)
        if self.channel.value != channels:
            self.channel.value = channels
        if self.fast is not None:
            self._reset()

    def set_step(self, name: str, on: bool, **params: Any) -> Recipe:
        """Tick (with ``params``, else the defaults) or untick a step; the preview follows.

        Ticking ``creep`` also ticks ``interpolate`` (creep acts through it); unticking
        ``interpolate`` also unticks ``creep``.
        """
        if on:
            recipe = self.recipe
            if name == "creep" and "interpolate" not in recipe.names:
                recipe = recipe.with_step("interpolate")
            recipe = recipe.with_step(name, **params)
        else:
            recipe = self.recipe.without(name)
        self.recipe = recipe
        for step, box in self.steps.items():
            if box.value != (step in recipe.names):
                box.value = step in recipe.names
        self.processed = None
        if self.fast is not None:
            self.show(self.slider.value)
        return recipe

    def _on_channel(self, channels: str) -> None:
        if channels != self.recipe.channels:
            self.set_channel(channels)

    def _on_box(self, name: str, on: bool) -> None:
        if on != (name in self.recipe.names):  # not an echo of set_step's own change
            self.set_step(name, on)

    # -- frames ------------------------------------------------------------------------------------

    def frame(self, index: int) -> tuple[ProcessedMovie, int]:
        """The movie holding frame ``index`` as it is shown now, and the frame's index in it.

        Raw frames without steps; the processed movie after :meth:`process_movie`; otherwise a
        preview: the recipe run on that frame's image only (cached).
        """
        if self.fast is None or self.raw is None:
            raise FastFileError("(no movie)", "load a movie first")
        if not 0 <= index < len(self.raw):
            raise IndexError(f"frame {index} is not in this movie of {len(self.raw)} frames")
        if not self.recipe.steps:
            return self.raw, index
        if self.processed is not None and self.processed.recipe == self.recipe:
            return self.processed, index
        image = self.raw.image_ids[index]
        key = (self.recipe.to_json(), image)
        if key not in self._previews:
            if len(self._previews) > 256:
                self._previews.clear()
            self._previews[key] = process(self.fast, self.recipe.replace(images=(image, image)),
                                          cache=self.stages)
        preview = self._previews[key]
        return preview, preview.frame_channels.index(self.raw.frame_channels[index])

    def frame_png(self, index: int) -> bytes:
        """Frame ``index`` as shown (see :meth:`frame`), as PNG bytes (pyfastspm's colours)."""
        from PIL import Image

        from .export import render_frame

        movie, i = self.frame(index)
        buf = io.BytesIO()
        Image.fromarray(render_frame(movie, i, scaling=2.0)).save(buf, format="PNG")
        return buf.getvalue()

    def show(self, index: int) -> None:
        """Put frame ``index`` into the picture."""
        if self.fast is None:
            return
        self.image.value = self.frame_png(index)

    # -- whole movie and exports ----------------------------------------------------------------------

    def process_movie(self) -> ProcessedMovie:
        """Run the recipe on the whole movie (progress bar), then play processed frames."""
        if self.fast is None:
            raise FastFileError("(no movie)", "load a movie first")

        def progress(done: int, total: int) -> None:
            self.progress.max = total
            self.progress.value = done

        self.processed = process(self.fast, self.recipe.replace(images=None), progress=progress,
                                 cache=self.stages)
        self._say(f"processed {len(self.processed)} frames with {', '.join(self.recipe.names) or 'no steps'}")
        self.show(self.slider.value)
        return self.processed

    def export(self, kind: str) -> list[str]:
        """Write the processed movie (processing it first if needed) as ``mp4`` (GIF without
        ffmpeg), ``png`` or ``gsf`` frames, or ``hdf5``; returns the written files."""
        from .export import export_frames, export_gsf, export_hdf5, export_movie

        if kind not in EXPORTS:
            raise ValueError(f"unknown export {kind!r}; use one of {', '.join(EXPORTS)}")
        movie = self.processed if self.processed is not None and self.processed.recipe == self.recipe else None
        if movie is None:
            movie = self.process_movie()
        out = self.output_text.value.strip() or "stm_output"
        stem = Path(str(movie.source).split("://", 1)[-1]).stem
        if kind == "mp4":
            written = [export_movie(movie, os.path.join(out, stem + ".mp4") if "://" not in out
                                    else out.rstrip("/") + f"/{stem}.mp4")]
        elif kind == "png":
            written = export_frames(movie, out)
        elif kind == "gsf":
            written = export_gsf(movie, out)
        else:
            written = [export_hdf5(movie, os.path.join(out, stem + "_processed.h5") if "://" not in out
                                   else out.rstrip("/") + f"/{stem}_processed.h5")]
        self._say(f"wrote {len(written)} file(s) to {out}")
        return written

    # -- messages ------------------------------------------------------------------------------

    def _say(self, text: str, error: bool = False) -> None:
        import html

        colour = "#b00020" if error else "inherit"
        self.status.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def _guard(self, fn: Any, *args: Any) -> Any:
        """Run a widget callback; a user error goes to the status line, not a traceback."""
        try:
            return fn(*args)
        except (FastFileError, RecipeError, FileNotFoundError, ValueError, IndexError) as exc:
            self._say(str(exc), error=True)
            self.log.info("movie app: %s", exc)
        return None
