"""Processing of FAST movies: a declarative recipe, run through pyfastspm's own steps.

A :class:`Recipe` names the movie channels, an optional image range and a set of steps with
their parameters. It is plain data: ``Recipe.from_dict(recipe.to_dict()) == recipe``, and it
travels as JSON (job parameters, the processed HDF5, the widget). Every value is checked when
the recipe is built; :class:`RecipeError` names the step and the field.

:func:`process` runs the steps in pyfastspm's own order (the order of its example notebook
``examples/pyfastspm_converter.ipynb``), whatever order the recipe lists them in:

=============== ========================================= ==================================
step            pyfastspm call                            on
=============== ========================================= ==================================
``phase``       ``FastMovie.correct_phase`` /             the time series
                ``FastMovie.reload_timeseries``
``fft``         ``convert_to_spectrum``, ``filter_freq``, the time series
                ``filter_noise``, ``convert_to_timeseries``
(channels)      ``FastMovie.reshape_to_movie``            time series -> movie
``creep``       ``Creep.fit_creep`` / ``fit_creep_bez``   the movie (gives the y grid)
``interpolate`` ``interpolate``                           the movie
``destreak``    ``conv_mat``                              the movie
``drift``       ``Drift.correct``                         the movie
``align_rows``  ``align_rows``                            each frame
``level_plane`` ``level_plane``                           each frame
``fix_zero``    ``fix_zero``                              each frame
``filter_2d``   ``mean_2d`` / ``median_2d`` /             each frame
                ``gaussian_2d``
=============== ========================================= ==================================

dass never changes pyfastspm's numbers: the frames of :class:`ProcessedMovie` are exactly what
these calls leave in ``FastMovie.data`` (tests compare them with the calls made directly).

Examples
--------
>>> from dass.stm import open_fast
>>> from dass.stm.process import Recipe, process
>>> recipe = Recipe.from_dict({"channels": "udi", "steps": [
...     {"name": "phase", "params": {"auto": True}},
...     {"name": "interpolate"}, {"name": "align_rows", "params": {"method": "median"}}]})
>>> with open_fast("20141003_24.h5") as fast:              # doctest: +SKIP
...     movie = process(fast, recipe)
>>> movie.frames.shape                                      # doctest: +SKIP
(136, 210, 105)
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DassError
from .fast import CHANNELS, FastFile, open_fast

__all__ = [
    "STEPS",
    "STEP_ORDER",
    "ProcessedMovie",
    "ProcessingError",
    "Recipe",
    "RecipeError",
    "Step",
    "as_recipe",
    "preview_frame",
    "process",
]

log = logging.getLogger(__name__)

RECIPE_VERSION = 1

#: The order :func:`process` runs the steps in (pyfastspm's own pipeline order).
STEP_ORDER: tuple[str, ...] = (
    "phase",
    "fft",
    "creep",
    "interpolate",
    "destreak",
    "drift",
    "align_rows",
    "level_plane",
    "fix_zero",
    "filter_2d",
)

#: Steps that work on the 1-D time series, before it is reshaped into a movie.
TIMESERIES_STEPS: tuple[str, ...] = ("phase", "fft")

#: pyfastspm's example kernel against streaks of interlaced movies (a 5 x 1 column filter).
STREAK_KERNEL: tuple[tuple[float], ...] = ((-1 / 12,), (3 / 12,), (8 / 12,), (3 / 12,), (-1 / 12,))

ProgressCallback = Callable[[int, int], None]


class RecipeError(DassError, ValueError, status=422):
    """A processing recipe that cannot be run; names the step and the field.

    Attributes
    ----------
    step : str or None
        The step concerned (``None`` for recipe-level fields such as ``channels``).
    field : str or None
        The parameter or recipe field.
    problem : str
        What is wrong and what to fix.
    """

    def __init__(self, problem: str, *, step: str | None = None, field: str | None = None) -> None:
        self.step = step
        self.field = field
        self.problem = problem
        where = []
        if step is not None:
            where.append(f"step {step!r}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = "recipe " + ", ".join(where) + ": " if where else "recipe: "
        super().__init__(prefix + problem)


class ProcessingError(DassError, RuntimeError):
    """A pyfastspm step failed on a file; names the file and the step, keeps the cause."""

    def __init__(self, path: str, step: str, problem: str) -> None:
        self.path = path
        self.step = step
        self.problem = problem
        super().__init__(f"{path}: processing step {step!r} failed: {problem}")


# ---------------------------------------------------------------------------------------------
# parameter checkers: each returns the normalised (JSON-able) value or raises ValueError(what)


def _bool(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"expected true or false, got {value!r}")


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            if isinstance(value, (float, np.floating)) and float(value).is_integer():
                value = int(value)
            else:
                raise ValueError(f"expected a whole number, got {value!r}")
        value = int(value)
        if lo is not None and value < lo:
            raise ValueError(f"expected a whole number >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise ValueError(f"expected a whole number <= {hi}, got {value}")
        return value

    return check


def _float(lo: float | None = None, *, strict: bool = False) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise ValueError(f"expected a number, got {value!r}")
        value = float(value)
        if not np.isfinite(value):
            raise ValueError(f"expected a finite number, got {value}")
        if lo is not None and (value <= lo if strict else value < lo):
            raise ValueError(f"expected a number {'>' if strict else '>='} {lo}, got {value}")
        return value

    return check


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def wrapped(value: Any) -> Any:
        return None if value is None else check(value)

    return wrapped


def _choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(map(repr, options))}, got {value!r}")
        return str(value)

    return check


def _floats(length: int | None = None, lo: float | None = None, strict: bool = False):
    item = _float(lo, strict=strict)

    def check(value: Any) -> list[float]:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, np.ndarray)):
            raise ValueError(f"expected a list of numbers, got {value!r}")
        if length is not None and len(value) != length:
            raise ValueError(f"expected {length} numbers, got {len(value)}")
        return [item(v) for v in value]

    return check


def _pairs(value: Any) -> list[list[float]]:
    """A list of ``[frequency_hz, width_hz]`` pairs (custom notches)."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise ValueError(f"expected a list of [frequency, width] pairs in Hz, got {value!r}")
    return [_floats(2, 0.0, strict=True)(pair) for pair in value]


def _kernel(value: Any) -> list[list[float]]:
    """A 2-D convolution kernel with odd sides, not 1 x 1 (pyfastspm's ``conv_mat`` crops by
    half the side, so an even or 1 x 1 kernel gives a wrong or empty frame)."""
    try:
        arr = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"expected a 2-D list of numbers, got {value!r}") from None
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"expected a 2-D list of numbers (rows of columns), got {value!r}")
    if arr.shape[0] % 2 == 0 or arr.shape[1] % 2 == 0 or arr.shape == (1, 1):
        raise ValueError(f"kernel sides must be odd and not both 1, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("kernel holds a non-finite number")
    return arr.tolist()


@dataclass(frozen=True)
class _Param:
    default: Any
    check: Callable[[Any], Any]
    help: str


#: Every step, its parameters, their defaults and meaning. Defaults follow pyfastspm's example
#: notebook where it sets one.
STEPS: dict[str, dict[str, _Param]] = {
    "phase": {
        "auto": _Param(True, _bool, "find the x phase correction by correlating forward and "
                       "backward lines (FastMovie.correct_phase); false: use the given phase"),
        "x_phase": _Param(None, _optional(_int()), "given x phase in samples (only without "
                          "auto); null: the file's Acquisition.X_Phase"),
        "additional_x": _Param(0, _int(), "added to the x phase (file, given or automatic)"),
        "y_phase": _Param(None, _optional(_int()), "y phase in lines; null: the file's "
                          "Acquisition.Y_Phase"),
        "frame": _Param(0, _int(0), "index of the 'udi' frame correlated for the automatic phase"),
        "sigma": _Param(0, _int(0), "Gaussian smoothing (pixels) before correlating; 0: none"),
    },
    "fft": {
        "filter_x": _Param(True, _bool, "notch at the x scan frequency"),
        "filter_y": _Param(True, _bool, "high pass above twice the y scan frequency"),
        "x_overtones": _Param(10, _int(0), "number of x-frequency overtones notched (0: none)"),
        "high_pass": _Param(None, _optional(_floats(2, 0.0, strict=True)),
                            "[frequency, width] in Hz of an extra high pass; null: none"),
        "pump_freqs": _Param([], _floats(None, 0.0, strict=True),
                             "pump frequencies in Hz to notch (with their overtones)"),
        "pump_overtones": _Param(3, _int(0), "overtones notched per pump frequency"),
        "broadness": _Param(None, _optional(_float(0.0, strict=True)),
                            "width in Hz of the notches; null: the y scan frequency"),
        "notches": _Param([], _pairs, "custom notches, a list of [frequency, width] in Hz"),
        "noise": _Param(False, _bool, "pyfastspm's conservative noise filter (threshold and "
                        "sigma = median spectrum amplitude); it averages in time"),
    },
    "creep": {
        "mode": _Param("sin", _choice("sin", "root", "bezier"), "creep function fitted"),
        "index_to_linear": _Param(0.2, _float(0.0, strict=True),
                                  "where the creep turns linear (fraction, or lines if >= 1)"),
        "initial_guess": _Param([0.3], _floats(None), "initial parameters ('sin', 'root')"),
        "known_params": _Param(None, _optional(_floats(None)),
                               "known parameters ('sin', 'root'): no fit"),
        "frames": _Param([0, 2], lambda v: [_int(0)(x) for x in _floats(None)(v)],
                         "frames used for the 'sin'/'root' fit"),
        "columns": _Param(3, _int(1), "number of columns fitted ('bezier')"),
        "weight_boundary": _Param(0.0, _float(0.0), "extra weight of the frame edges ('bezier')"),
        "known_input": _Param(None, _optional(_floats(3)), "known shape ('bezier'): no fit"),
    },
    "interpolate": {
        "offset": _Param(0.0, _float(), "y offset of the regular grid (pixels)"),
    },
    "destreak": {
        "kernel": _Param([list(r) for r in STREAK_KERNEL], _kernel,
                         "convolution kernel (pyfastspm conv_mat); default: its streak filter"),
    },
    "drift": {
        "mode": _Param("full", _choice("full", "common"),
                       "'full': frames move in a larger canvas; 'common': crop to the common area"),
        "stepsize": _Param(10, _int(1), "frames between two correlated frames"),
        "boxcar": _Param(True, _bool, "smooth the drift path with a 50-frame boxcar"),
    },
    "align_rows": {
        "method": _Param("median", _choice("mean", "median", "poly2", "poly3"),
                         "row baseline subtracted"),
    },
    "level_plane": {},
    "fix_zero": {},
    "filter_2d": {
        "kind": _Param("gaussian", _choice("mean", "median", "gaussian"), "2-D filter"),
        "pixel_width": _Param(3, _int(1), "kernel size in pixels"),
    },
}


@dataclass(frozen=True)
class Step:
    """One processing step: its name (a key of :data:`STEPS`) and all its parameters."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls, name: Any, params: Mapping[str, Any] | None = None) -> Step:
        """A checked step: unknown names and parameters and bad values raise
        :class:`RecipeError`; missing parameters get their defaults."""
        if not isinstance(name, str) or name not in STEPS:
            raise RecipeError(
                f"unknown step {name!r}; use one of {', '.join(STEP_ORDER)}", step=str(name)
            )
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise RecipeError(f"parameters must be a mapping, got {params!r}", step=name)
        spec = STEPS[name]
        unknown = sorted(set(params) - set(spec))
        if unknown:
            known = ", ".join(spec) or "none"
            raise RecipeError(
                f"unknown parameter(s) {', '.join(map(repr, unknown))}; this step takes: {known}",
                step=name, field=str(unknown[0]),
            )
        clean: dict[str, Any] = {}
        for key, p in spec.items():
            value = params.get(key, p.default)
            try:
                clean[key] = p.check(value)
            except ValueError as exc:
                raise RecipeError(f"{exc} ({p.help})", step=name, field=key) from None
        if name == "phase" and clean["auto"] and clean["x_phase"] is not None:
            raise RecipeError(
                "a given x_phase needs auto false (the automatic phase starts from the file's)",
                step=name, field="x_phase",
            )
        return cls(name, clean)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": json.loads(json.dumps(dict(self.params)))}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Step) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))


def _check_images(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        first, last = (_int(0)(v) for v in _floats(2)(value))
    except ValueError as exc:
        raise RecipeError(
            f"{exc}: give [first, last] image indexes (0-based, inclusive) or null for all",
            field="images",
        ) from None
    if last < first:
        raise RecipeError(f"last image {last} is before first image {first}", field="images")
    return (first, last)


@dataclass(frozen=True)
class Recipe:
    """A declarative, JSON-able processing recipe for :func:`process`.

    Parameters
    ----------
    channels : str
        One of :data:`dass.stm.CHANNELS` (``"udi"``: up and down frames, forward and backward
        lines interlaced — what pyfastspm's creep and interpolation are made for).
    steps : sequence of Step or mapping
        At most one of each step of :data:`STEPS`; kept in :data:`STEP_ORDER`.
    images : (int, int) or None
        First and last image (0-based, inclusive) to interpolate, destreak and keep; ``None``
        for all. FFT, drift and frame corrections see the whole movie, as in pyfastspm.
    """

    channels: str = "udi"
    steps: tuple[Step, ...] = ()
    images: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.channels not in CHANNELS:
            raise RecipeError(
                f"unknown channels {self.channels!r}; use one of {', '.join(CHANNELS)}",
                field="channels",
            )
        steps: list[Step] = []
        for item in self.steps:
            if isinstance(item, Step):
                step = Step.make(item.name, item.params)
            elif isinstance(item, Mapping):
                extra = sorted(set(item) - {"name", "params"})
                if extra:
                    raise RecipeError(
                        f"a step is {{'name': ..., 'params': {{...}}}}; unexpected key(s) "
                        f"{', '.join(map(repr, extra))}", step=str(item.get("name")), field=extra[0],
                    )
                step = Step.make(item.get("name"), item.get("params"))
            else:
                raise RecipeError(f"a step must be a mapping with 'name' and 'params', got {item!r}")
            if any(s.name == step.name for s in steps):
                raise RecipeError("appears twice; give each step once", step=step.name)
            steps.append(step)
        names = {s.name for s in steps}
        if "creep" in names and "interpolate" not in names:
            raise RecipeError(
                "creep correction only acts through the interpolate step; add 'interpolate'",
                step="creep",
            )
        steps.sort(key=lambda s: STEP_ORDER.index(s.name))
        object.__setattr__(self, "steps", tuple(steps))
        object.__setattr__(self, "images", _check_images(self.images))

    # -- building and changing --------------------------------------------------------------

    @classmethod
    def standard(cls, channels: str = "udi") -> Recipe:
        """pyfastspm's example pipeline: automatic phase, FFT filters, sine creep fit,
        interpolation, median row alignment, 3-pixel Gaussian filter (no drift)."""
        return cls(channels, tuple(Step.make(n) for n in
                                   ("phase", "fft", "creep", "interpolate", "align_rows", "filter_2d")))

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the steps, in the order they run."""
        return tuple(s.name for s in self.steps)

    def step(self, name: str) -> Step | None:
        """The step called ``name``, or ``None``."""
        return next((s for s in self.steps if s.name == name), None)

    def with_step(self, name: str, **params: Any) -> Recipe:
        """A copy with step ``name`` added or replaced (parameters checked)."""
        new = Step.make(name, params)
        return Recipe(self.channels, tuple(s for s in self.steps if s.name != name) + (new,), self.images)

    def without(self, name: str) -> Recipe:
        """A copy without step ``name`` (also without ``creep`` when ``interpolate`` goes)."""
        drop = {name, "creep"} if name == "interpolate" else {name}
        return Recipe(self.channels, tuple(s for s in self.steps if s.name not in drop), self.images)

    def replace(self, *, channels: str | None = None, images: Any = ...) -> Recipe:
        """A copy with other channels and/or image range (``images=None``: all)."""
        return Recipe(channels or self.channels, self.steps, self.images if images is ... else images)

    # -- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; :meth:`from_dict` reads it back."""
        return {
            "version": RECIPE_VERSION,
            "channels": self.channels,
            "images": list(self.images) if self.images is not None else None,
            "steps": [s.to_dict() for s in self.steps],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """Build from :meth:`to_dict`'s form; every field checked (:class:`RecipeError`)."""
        if isinstance(data, Recipe):
            return data
        if not isinstance(data, Mapping):
            raise RecipeError(f"a recipe is a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"version", "channels", "images", "steps"})
        if unknown:
            raise RecipeError(
                f"unknown field(s) {', '.join(map(repr, unknown))}; a recipe has version, "
                "channels, images, steps", field=unknown[0],
            )
        version = data.get("version", RECIPE_VERSION)
        if version != RECIPE_VERSION:
            raise RecipeError(f"version {version!r} is not supported (use {RECIPE_VERSION})",
                              field="version")
        steps = data.get("steps", [])
        if isinstance(steps, (str, bytes, Mapping)) or not isinstance(steps, Sequence):
            raise RecipeError(f"steps must be a list, got {steps!r}", field="steps")
        return cls(data.get("channels", "udi"), tuple(steps), data.get("images"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Recipe:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecipeError(f"not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
        return cls.from_dict(data)


def as_recipe(recipe: Recipe | Mapping[str, Any] | str | None) -> Recipe:
    """A :class:`Recipe` from a recipe, its dict, its JSON text, or ``None`` (the standard one)."""
    if recipe is None:
        return Recipe.standard()
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, (str, bytes)):
        return Recipe.from_json(recipe)
    return Recipe.from_dict(recipe)


# ---------------------------------------------------------------------------------------------
# the processed movie


@dataclass
class ProcessedMovie:
    """The result of :func:`process`.

    Attributes
    ----------
    frames : ndarray, float32, (n_frames, rows, columns)
        pyfastspm's processed frames of the recipe's image range.
    image_ids : list of int
        The image each frame belongs to.
    frame_channels : list of str
        Each frame's channel (``"ui"``, ``"di"``, ``"uf"``, …), as pyfastspm's ``iter_frames``.
    fps : float
        Frames per second of the measurement (pyfastspm's ``FastMovie.fps``).
    channels : str
    recipe : Recipe
    source : str
        The FAST file or URL.
    metadata : dict
        The file's catalogue metadata (:func:`dass.stm.fast.fast_metadata`).
    processing : dict
        What the steps found: phases, creep parameters, drift path, library versions.
    """

    frames: np.ndarray
    image_ids: list[int]
    frame_channels: list[str]
    fps: float
    channels: str
    recipe: Recipe
    source: str
    metadata: dict[str, Any]
    processing: dict[str, Any]

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def labels(self) -> list[str]:
        """``"<image><channel>"`` per frame, as pyfastspm labels exported frames (``"3ui"``)."""
        return [f"{i}{c}" for i, c in zip(self.image_ids, self.frame_channels)]

    @property
    def times(self) -> np.ndarray:
        """Start time (s) of each frame from the start of the movie (pyfastspm's
        ``frame_id / fps``)."""
        return np.asarray(self.processing["frame_ids"], dtype=float) / self.fps

    @property
    def synthetic(self) -> bool:
        """True for a synthetic movie (``ExperimentInfo.Synthetic`` set by
        :mod:`dass.stm.synthetic`)."""
        return bool(self.metadata.get("attributes", {}).get("ExperimentInfo.Synthetic", False))

    def summary(self) -> dict[str, Any]:
        """JSON-able description (no frames): recipe, shape, fps, processing results."""
        return {
            "source": self.source,
            "channels": self.channels,
            "num_frames": len(self),
            "frame_shape": list(self.frames.shape[1:]),
            "fps": self.fps,
            "images": [min(self.image_ids), max(self.image_ids)] if self.image_ids else None,
            "synthetic": self.synthetic,
            "recipe": self.recipe.to_dict(),
            "processing": self.processing,
        }


# ---------------------------------------------------------------------------------------------
# running pyfastspm


@contextlib.contextmanager
def _quiet():
    """pyfastspm prints and draws tqdm bars; keep them out of notebooks and job logs."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield
    text = (out.getvalue() + err.getvalue()).strip()
    if text:
        log.debug("pyfastspm said: %s", text[-2000:])


def _run_phase(movie: Any, p: Mapping[str, Any]) -> None:
    y_phase = p["y_phase"] if p["y_phase"] is not None else int(movie.metadata["Acquisition.Y_Phase"])
    if p["x_phase"] is not None:
        movie.reload_timeseries(x_phase=p["x_phase"] + p["additional_x"], y_phase=y_phase)
        return
    # as pyfastspm's notebook: load with the chosen y phase, then correct_phase
    if movie.mode != "timeseries" or movie.y_phase != y_phase or (
        movie.x_phase != movie.metadata["Acquisition.X_Phase"]
    ):
        movie.reload_timeseries(y_phase=y_phase)
    movie.correct_phase(
        apply_auto_xphase=p["auto"],
        index_frame_to_correlate=p["frame"],
        sigma_gauss=p["sigma"],
        additional_x_phase=p["additional_x"],
        manual_y_phase=y_phase,
    )


def fft_filters(movie: Any, p: Mapping[str, Any]) -> tuple[list[float], list[float], list[str]]:
    """The ``(freqs, pars, types)`` of pyfastspm's ``filter_freq`` for an ``fft`` step:
    pyfastspm's ``parameter_assembler`` plus the custom notches (type ``"g"``)."""
    from pyfastspm.artefact_removal.fft import parameter_assembler

    filterparam = [
        p["filter_x"], p["filter_y"], p["x_overtones"] > 0, p["high_pass"] is not None,
        bool(p["pump_freqs"]), p["noise"], False,
    ]
    freqs, pars, types = parameter_assembler(
        filterparam,
        movie.metadata["Scanner.X_Frequency"],
        movie.metadata["Scanner.Y_Frequency"],
        p["broadness"],
        tuple(p["pump_freqs"]),
        p["pump_overtones"],
        p["x_overtones"],
        tuple(p["high_pass"]) if p["high_pass"] is not None else None,
    )
    for freq, width in p["notches"]:
        freqs.append(freq)
        pars.append(width)
        types.append("g")
    return freqs, pars, types


def _run_fft(movie: Any, p: Mapping[str, Any]) -> dict[str, Any]:
    import pyfastspm as pf

    freqs, pars, types = fft_filters(movie, p)
    pf.convert_to_spectrum(movie)
    if freqs:
        pf.filter_freq(movie, freqs, pars, types)
    noise = None
    if p["noise"]:
        # pyfastspm's filter_movie: threshold and sigma both the median spectrum amplitude
        threshold = np.median(np.abs(movie.data))  # np.float64, exactly as filter_movie passes it
        pf.filter_noise(movie, threshold, threshold)
        noise = float(threshold)
    pf.convert_to_timeseries(movie)
    return {"filters": [[f, w, t] for f, w, t in zip(freqs, pars, types)], "noise_threshold": noise}


def _run_creep(movie: Any, p: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    import pyfastspm as pf

    if p["mode"] == "bezier":
        creep = pf.Creep(movie, index_to_linear=p["index_to_linear"])
        cols = np.linspace(movie.data.shape[2] * 0.25, movie.data.shape[2] * 0.75, p["columns"])
        known = tuple(p["known_input"]) if p["known_input"] is not None else None
        opt, grid = creep.fit_creep_bez(
            col_inds=cols.astype(int), w=p["weight_boundary"], known_input=known
        )
        return grid, {"mode": "bezier", "shape": [float(v) for v in opt]}
    creep = pf.Creep(movie, index_to_linear=p["index_to_linear"], creep_mode=p["mode"])
    known = tuple(p["known_params"]) if p["known_params"] is not None else None
    grid = creep.fit_creep(tuple(p["initial_guess"]), frames=list(p["frames"]), known_params=known)
    return grid, {"mode": p["mode"]}


def _run_drift(movie: Any, p: Mapping[str, Any], n_frames: int) -> dict[str, Any]:
    import pyfastspm as pf

    if p["stepsize"] >= n_frames:
        raise RecipeError(
            f"stepsize {p['stepsize']} must be smaller than the number of frames ({n_frames}); "
            "lower it", step="drift", field="stepsize",
        )
    drift = pf.Drift(movie, stepsize=p["stepsize"], boxcar=p["boxcar"])
    with tempfile.TemporaryDirectory(prefix="dass-drift-") as tmp:
        # Drift writes its path to <file>.drift.txt next to the data; keep datasets untouched
        drift.file = os.path.join(tmp, "movie.drift.txt")
        movie.data, path = drift.correct(p["mode"])
    return {"drift_path": np.asarray(path, dtype=float).round(5).tolist()}


def process(
    fast_file: FastFile | str | os.PathLike[str],
    recipe: Recipe | Mapping[str, Any] | str | None = None,
    progress: ProgressCallback | None = None,
) -> ProcessedMovie:
    """Process a FAST movie with pyfastspm's own steps, as a recipe says.

    Parameters
    ----------
    fast_file : FastFile or path or URL
        An opened movie (:func:`dass.stm.open_fast`; its ``movie`` is not modified) or a file
        to open (and close again).
    recipe : Recipe, dict, JSON text or None
        ``None``: :meth:`Recipe.standard`.
    progress : callable(done, total), optional
        Called after loading, after each step and at the end.

    Returns
    -------
    ProcessedMovie

    Raises
    ------
    RecipeError
        Bad recipe, or a recipe that does not fit this movie (image range, drift step size).
    ProcessingError
        A pyfastspm step failed; the message names the file and the step.
    FastFileError, FileNotFoundError
        From :func:`dass.stm.open_fast` when a path is given.
    """
    recipe = as_recipe(recipe)
    if not isinstance(fast_file, FastFile):
        with open_fast(fast_file) as opened:
            return process(opened, recipe, progress)

    import pyfastspm as pf

    total = len(recipe.steps) + 2
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    movie = fast_file.movie.clone()
    if movie.mode != "timeseries":
        movie.reload_timeseries(x_phase=fast_file.movie.x_phase, y_phase=fast_file.movie.y_phase)
    if recipe.images is not None and recipe.images[1] >= movie.num_images:
        raise RecipeError(
            f"image range {list(recipe.images)} goes past the last image "
            f"({movie.num_images - 1}) of {fast_file.path}", field="images",
        )
    if "fft" in recipe.names and "Acquisition.ADC_SamplingRate" not in movie.metadata:
        raise RecipeError(
            f"{fast_file.path} has no Acquisition.ADC_SamplingRate attribute, which the FFT "
            "filters need; remove the fft step", step="fft",
        )
    info: dict[str, Any] = {
        "pyfastspm_version": pf.__version__,
        "dass_version": _dass_version(),
        "file_x_phase": int(fast_file.movie.x_phase),
        "file_y_phase": int(fast_file.movie.y_phase),
    }
    image_range = recipe.images if recipe.images is not None else None
    grid = None
    advance()
    reshaped = False
    for step in recipe.steps:
        p = step.params
        if step.name not in TIMESERIES_STEPS and not reshaped:
            movie.reshape_to_movie(recipe.channels)
            reshaped = True
        log.debug("%s: step %s %s", fast_file.path, step.name, dict(p))
        try:
            with _quiet():
                if step.name == "phase":
                    _run_phase(movie, p)
                elif step.name == "fft":
                    info["fft"] = _run_fft(movie, p)
                elif step.name == "creep":
                    grid, info["creep"] = _run_creep(movie, p)
                elif step.name == "interpolate":
                    pf.interpolate(movie, offset=p["offset"], grid=grid, image_range=image_range)
                elif step.name == "destreak":
                    pf.conv_mat(movie, p["kernel"], image_range=image_range)
                elif step.name == "drift":
                    info["drift"] = _run_drift(movie, p, movie.data.shape[0])
                elif step.name == "align_rows":
                    pf.align_rows(movie, p["method"])
                elif step.name == "level_plane":
                    pf.level_plane(movie)
                elif step.name == "fix_zero":
                    pf.fix_zero(movie)
                elif step.name == "filter_2d":
                    {"mean": pf.mean_2d, "median": pf.median_2d, "gaussian": pf.gaussian_2d}[
                        p["kind"]](movie, p["pixel_width"])
        except RecipeError:
            raise
        except Exception as exc:  # pyfastspm raises bare ValueError/IndexError/LinAlgError
            raise ProcessingError(fast_file.path, step.name, f"{type(exc).__name__}: {exc}") from exc
        advance()
    if not reshaped:
        movie.reshape_to_movie(recipe.channels)
    info["x_phase"] = int(movie.x_phase)
    info["y_phase"] = int(movie.y_phase)

    picked = list(movie.iter_frames(image_range))
    frame_ids = [f for _, _, f in picked]
    frames = np.ascontiguousarray(movie.data[frame_ids], dtype=np.float32)
    info["frame_ids"] = frame_ids
    result = ProcessedMovie(
        frames=frames,
        image_ids=[int(i) for i, _, _ in picked],
        frame_channels=[str(c) for _, c, _ in picked],
        fps=float(movie.fps),
        channels=recipe.channels,
        recipe=recipe,
        source=fast_file.path,
        metadata=dict(fast_file.metadata),
        processing=info,
    )
    movie.close()
    advance()
    log.info("%s: processed %d frames (%s) with steps %s", fast_file.path, len(result),
             recipe.channels, ", ".join(recipe.names) or "none")
    return result


def _dass_version() -> str:
    from dass import __version__

    return __version__


def preview_frame(
    fast_file: FastFile, recipe: Recipe | Mapping[str, Any] | str | None, image: int,
    channel_index: int = 0,
) -> np.ndarray:
    """One processed frame (image ``image``, the ``channel_index``-th channel of the recipe's
    channels): :func:`process` restricted to that image, for live previews."""
    recipe = as_recipe(recipe).replace(images=(image, image))
    movie = process(fast_file, recipe)
    return movie.frames[min(channel_index, len(movie) - 1)]
