"""The SEM model registry, kept in the repository storage under ``models/``.

Layout (``<root>`` is the repository root of :class:`dass.data.storage.Storage`)::

    <root>/models/registry.json        {"schema": "dass.sem.registry/1", "default": "<name>"}
    <root>/models/<name>/model.pt      the checkpoint (its info.name is <name>)
    <root>/models/<name>/model.json    the checkpoint's ModelInfo as JSON (listing needs no torch)
    <root>/models/<name>/README.md     the model card (see models/README.md of the source tree)

The catalogue scan skips the top-level ``models/`` folder: models are not datasets.

Examples
--------
>>> from dass.data.storage import Storage  # doctest: +SKIP
>>> reg = ModelRegistry(Storage(url="file:///srv/repo"))  # doctest: +SKIP
>>> reg.register("run/model.pt", "nffa-resnet50", default=True)  # doctest: +SKIP
>>> reg.load().classify(["image.tif"])  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import logging
import os
import posixpath
import re
from typing import TYPE_CHECKING, Any

from dass.sem.checkpoint import CheckpointError, ModelInfo

from ..errors import DassError

if TYPE_CHECKING:
    from dass.sem.classify import Classifier

log = logging.getLogger(__name__)

__all__ = ["MODELS_FOLDER", "ModelRegistry", "RegistryError", "model_card"]

#: Folder under the repository root that holds the registry.
MODELS_FOLDER = "models"
SCHEMA = "dass.sem.registry/1"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RegistryError(DassError):
    """The registry cannot do what was asked; the message names the model or file and the fix."""


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def model_card(info: ModelInfo) -> str:
    """The model card (Markdown) of a registered model.

    Says what the model is, on what data it was trained (with a SYNTHETIC warning when it
    was), how well it did on held-out images (accuracy, per-class precision/recall/F1,
    confusion matrix), how it was trained, and how to use it.
    """
    t, m = info.trained_on, info.metrics
    lines = [f"# SEM classifier `{info.name}`", ""]
    if info.synthetic:
        lines += ["> **Trained on SYNTHETIC data.** The images came from `dass.sem.synthetic`, a procedural",
                  "> generator for tests and demos. Do not use this model to label real SEM images.", ""]
    lines += [
        "| | |", "|---|---|",
        f"| Architecture | `{info.architecture}` (torchvision), {len(info.classes)} classes |",
        f"| Input | grayscale, data bar cropped, {info.input_size}x{info.input_size} px, "
        f"normalized with mean {info.mean:.3f}, std {info.std:.3f} |",
        f"| Created | {info.created} (dass {info.dass_version}) |",
        f"| Training data | `{t.get('url', '?')}`{' (SYNTHETIC)' if info.synthetic else ''} |",
        f"| Data fingerprint | `{t.get('fingerprint', '?')}` |",
        f"| Images | {t.get('n_images', '?')} ({t.get('n_train', '?')} train, {t.get('n_val', '?')} validation, "
        f"{t.get('skipped', 0)} unreadable skipped) |",
    ]
    if m:
        lines.append(f"| Validation accuracy | {_fmt(m.get('accuracy'))} on {m.get('n_val', '?')} images "
                     f"(balanced {_fmt(m.get('balanced_accuracy', '?'))}) |")
    tr = info.training or {}
    if tr.get("weights"):
        lines.append(f"| Initial weights | `{tr['weights']}` (`{tr.get('weights_sha256') or '?'}`) |")
    elif "weights" in tr:
        lines.append("| Initial weights | none (random initialization) |")
    split = "per_class_train" in t
    lines += ["", "## Categories", "",
              "| Output | Category id | Name | Training images | Validation images | Precision | Recall | F1 |"
              if split else "| Output | Category id | Name | Images (training + validation) | Precision | Recall | F1 |",
              "|---:|---|---|---:|---:|---:|---:|---:|" if split else "|---:|---|---|---:|---:|---:|---:|"]
    per_class = m.get("per_class", {}) if m else {}
    for i, (cid, dname) in enumerate(zip(info.classes, info.display_names)):
        pc = per_class.get(cid, {})
        counts = (f"{t['per_class_train'].get(cid, '?')} | {t.get('per_class_val', {}).get(cid, '?')}" if split
                  else str(t.get("per_class", {}).get(cid, "?")))
        lines.append(f"| {i} | `{cid}` | {dname} | {counts} | "
                     f"{_fmt(pc.get('precision', '-'))} | {_fmt(pc.get('recall', '-'))} | {_fmt(pc.get('f1', '-'))} |")
    cm = m.get("confusion_matrix") if m else None
    if cm:
        lines += ["", "## Confusion matrix (validation set)", "",
                  "Rows: true category, columns: predicted category, in output order.", "", "```"]
        width = max(4, max(len(str(v)) for row in cm for v in row) + 1)
        lines.append(" " * 4 + "".join(f"{j:>{width}}" for j in range(len(cm))))
        lines += [f"{i:>3} " + "".join(f"{v:>{width}}" for v in row) for i, row in enumerate(cm)]
        lines.append("```")
    if info.training:
        lines += ["", "## Training", ""]
        lines += [f"- {k}: `{v}`" for k, v in info.training.items()]
    if info.notes:
        lines += ["", "## Notes", "", info.notes]
    lines += ["", "## Use", "", "```python", "from dass.data.storage import Storage",
              "from dass.sem.registry import ModelRegistry", "",
              f"classifier = ModelRegistry(Storage()).load({info.name!r})",
              "prediction = classifier.classify([\"image.tif\"])[0]",
              "print(prediction.category, prediction.certainty)", "```", "",
              "Command line: `dass sem classify --model " + info.name + " FILES...`", ""]
    return "\n".join(lines)


class _FsStorage:
    """The two attributes of a Storage the registry uses: ``fs`` and ``root``."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/") or "/"


class ModelRegistry:
    """Registered SEM classifiers in repository storage (see the module docstring for the layout).

    Parameters
    ----------
    storage : dass.data.storage.Storage
        The repository storage (anything with ``fs`` and ``root`` attributes works).
    """

    def __init__(self, storage: Any) -> None:
        self.storage = storage

    @classmethod
    def from_fs(cls, fs: Any, root: str) -> "ModelRegistry":
        """A registry on an fsspec filesystem and repository root path."""
        return cls(_FsStorage(fs, root))

    # ---------------------------------------------------------------- paths and I/O

    @property
    def fs(self) -> Any:
        return self.storage.fs

    @property
    def folder(self) -> str:
        root = str(self.storage.root).rstrip("/")
        return f"{root}/{MODELS_FOLDER}" if root else MODELS_FOLDER

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.folder, *parts)

    def _check_name(self, name: str) -> str:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise RegistryError(
                f"invalid model name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return name

    def _read_json(self, path: str) -> Any:
        try:
            return json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RegistryError(f"cannot read {path}: {exc}") from exc

    def _write(self, path: str, data: bytes) -> None:
        try:
            self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
            self.fs.pipe_file(path, data)
        except OSError as exc:
            raise RegistryError(f"cannot write {path}: {exc}; check the repository storage") from exc

    def _state(self) -> dict[str, Any]:
        state = self._read_json(self._path("registry.json"))
        return state if isinstance(state, dict) else {"schema": SCHEMA, "default": None}

    def _names(self) -> list[str]:
        try:
            if not self.fs.exists(self.folder):
                return []
            self.fs.invalidate_cache(self.folder)
            entries = self.fs.ls(self.folder, detail=True)
        except OSError as exc:
            raise RegistryError(f"cannot list {self.folder}: {exc}") from exc
        names = []
        for entry in entries:
            base = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if entry.get("type") == "directory" and NAME_RE.match(base):
                names.append(base)
        return sorted(names)

    # ---------------------------------------------------------------- API

    def info(self, name: str) -> ModelInfo:
        """The :class:`ModelInfo` of a registered model (read from its ``model.json``)."""
        data = self._read_json(self._path(self._check_name(name), "model.json"))
        if data is None:
            raise RegistryError(f"no model named {name!r} in {self.folder}; registered: "
                                f"{', '.join(self._names()) or 'none'}")
        try:
            return ModelInfo.from_json(data, source=self._path(name, "model.json"))
        except CheckpointError as exc:
            raise RegistryError(str(exc)) from None

    def list(self) -> list[dict[str, Any]]:
        """Every registered model: ``name``, ``architecture``, ``created``, ``trained_on``,
        ``metrics`` (accuracy and per-class), ``synthetic``, ``classes``, ``input_size``, ``default``.

        A folder without a readable ``model.json`` is listed with an ``error``.
        """
        default = self.default_name()
        out = []
        for name in self._names():
            try:
                info = self.info(name)
            except RegistryError as exc:
                out.append({"name": name, "error": str(exc), "default": name == default})
                continue
            out.append({
                "name": name,
                "architecture": info.architecture,
                "created": info.created,
                "trained_on": info.trained_on,
                "metrics": {k: info.metrics.get(k) for k in ("accuracy", "balanced_accuracy", "n_val", "per_class")},
                "synthetic": info.synthetic,
                "classes": list(info.classes),
                "input_size": info.input_size,
                "notes": info.notes,
                "default": name == default,
            })
        return out

    def default_name(self) -> str | None:
        """Name of the default model, or None when none is set (or it was removed)."""
        name = self._state().get("default")
        if name and self.fs.exists(self._path(name, "model.pt")):
            return name
        return None

    def set_default(self, name: str) -> None:
        """Make a registered model the default.

        Raises
        ------
        RegistryError
            When no model of that name is registered.
        """
        self._check_name(name)
        if not self.fs.exists(self._path(name, "model.pt")):
            raise RegistryError(f"cannot make {name!r} the default: no such model in {self.folder}; "
                                f"registered: {', '.join(self._names()) or 'none'}")
        state = self._state()
        state.update(schema=SCHEMA, default=name)
        self._write(self._path("registry.json"), (json.dumps(state, indent=2) + "\n").encode())
        log.info("SEM model registry %s: default model is now %s", self.folder, name)

    def register(self, checkpoint: str | os.PathLike | bytes, name: str | None = None, *,
                 default: bool = False, overwrite: bool = False) -> dict[str, Any]:
        """Copy a checkpoint into the registry and write its model card.

        Parameters
        ----------
        checkpoint : str, os.PathLike or bytes
            A checkpoint file (path or fsspec URL) or its bytes.
        name : str, optional
            Registry name (default: the checkpoint's ``info.name``); stored as the model's name.
        default : bool
            Make it the default model. The first model registered becomes the default anyway.
        overwrite : bool
            Replace a model of the same name (otherwise that is an error).

        Returns
        -------
        dict
            The model's entry as :meth:`list` gives it.

        Raises
        ------
        RegistryError
            Bad name, name taken, unusable checkpoint, storage not writable.
        """
        import torch

        from dass.sem.checkpoint import _read

        try:
            obj, source = _read(checkpoint)
            info = ModelInfo.from_json(obj.get("info"), source=source)
        except CheckpointError as exc:
            raise RegistryError(f"cannot register: {exc}") from None
        name = self._check_name(name or info.name)
        if self.fs.exists(self._path(name)) and not overwrite:
            raise RegistryError(f"a model named {name!r} is registered already; choose another name "
                                "or replace it (overwrite=True, --overwrite)")
        info.name = name
        obj["info"] = info.to_json()
        buf = io.BytesIO()
        torch.save(obj, buf)
        self._write(self._path(name, "model.pt"), buf.getvalue())
        self._write(self._path(name, "model.json"), (json.dumps(info.to_json(), indent=2) + "\n").encode())
        self._write(self._path(name, "README.md"), model_card(info).encode())
        log.info("SEM model registry %s: registered %s (%s) from %s", self.folder, name, info.architecture, source)
        if default or self.default_name() is None:
            self.set_default(name)
        return next(m for m in self.list() if m["name"] == name)

    def checkpoint_bytes(self, name: str | None = None) -> bytes:
        """The checkpoint file of a model (None: the default)."""
        name = self._resolve(name)
        try:
            return self.fs.cat_file(self._path(name, "model.pt"))
        except FileNotFoundError:
            raise RegistryError(f"no model named {name!r} in {self.folder}") from None
        except OSError as exc:
            raise RegistryError(f"cannot read {self._path(name, 'model.pt')}: {exc}") from exc

    def _resolve(self, name: str | None) -> str:
        if name is None:
            name = self.default_name()
            if name is None:
                raise RegistryError(
                    f"no default SEM model in {self.folder}: train one (dass sem train DATA --out DIR "
                    "--register NAME --default) or register a checkpoint (dass sem models register FILE)"
                )
        return self._check_name(name)

    def load(self, name: str | None = None, *, device: str = "auto", accelerate: str = "auto") -> "Classifier":
        """Load a registered model (None: the default) as a :class:`~dass.sem.classify.Classifier`.

        `accelerate` is passed to :meth:`~dass.sem.classify.Classifier.load`.

        Raises
        ------
        RegistryError
            No such model, no default, or an unusable checkpoint.
        """
        from dass.sem.classify import Classifier

        name = self._resolve(name)
        data = self.checkpoint_bytes(name)
        try:
            clf = Classifier.load(data, device=device, accelerate=accelerate)
        except CheckpointError as exc:
            raise RegistryError(f"model {name!r}: {str(exc).replace('<bytes>', self._path(name, 'model.pt'))}") from None
        clf.source = self._path(name, "model.pt")
        return clf
