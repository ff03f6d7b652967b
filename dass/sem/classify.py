"""Batch inference: classify SEM images with a trained checkpoint.

The model is loaded once (:meth:`Classifier.load`), images are prepared with
:func:`dass.sem.databar.preprocess` -- the very function training uses -- and run
in batches under ``torch.inference_mode`` in eval mode, on CPU or GPU.

:meth:`Classifier.classify` raises :class:`~dass.sem.io.SemReadError` naming the
first unreadable item; :meth:`Classifier.classify_files` instead returns one
:class:`Outcome` per input -- a prediction or the reason it failed -- which is
what a service that accepts many uploads needs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from dass.sem.categories import CATEGORY_IDS, display_name
from dass.sem.checkpoint import ModelInfo
from dass.sem.io import SemImage, SemReadError

if TYPE_CHECKING:
    import PIL.Image
    import torch

log = logging.getLogger(__name__)

__all__ = ["Classifier", "ImageInput", "Outcome", "Prediction", "image_array", "item_name"]

ImageInput = Union[SemImage, np.ndarray, "PIL.Image.Image", bytes, str, os.PathLike]
Progress = Callable[[int, int, str], None]


def _name(category_id: str) -> str:
    return display_name(category_id) if category_id in CATEGORY_IDS else category_id


@dataclass
class Prediction:
    """The classification of one image.

    Attributes
    ----------
    category : str
        Id of the top category.
    certainty : float
        Its probability (softmax score) in [0, 1].
    scores : dict
        Every category id of the model -> probability; the values sum to 1.
    """

    category: str
    certainty: float
    scores: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict with display names: ``category``, ``display_name``, ``certainty``, ``scores``.

        ``scores`` is a list of ``{"category", "display_name", "score"}`` sorted best first.
        """
        ranked = sorted(self.scores.items(), key=lambda kv: -kv[1])
        return {
            "category": self.category,
            "display_name": _name(self.category),
            "certainty": self.certainty,
            "scores": [{"category": c, "display_name": _name(c), "score": s} for c, s in ranked],
        }


@dataclass
class Outcome:
    """Result for one input of :meth:`Classifier.classify_files`: a prediction or an error."""

    name: str
    prediction: Prediction | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.prediction is not None

    def to_json(self) -> dict[str, Any]:
        if self.prediction is None:
            return {"name": self.name, "status": "error", "reason": self.error}
        return {"name": self.name, "status": "ok", **self.prediction.to_json()}


def item_name(item: Any, index: int) -> str:
    """A name for an input in messages: its path/URL/source, else ``item <index>``."""
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item) if not isinstance(os.fspath(item), bytes) else os.fspath(item).decode()
    if isinstance(item, SemImage) and item.source != "<bytes>":
        return item.source
    return f"item {index}"


def image_array(item: ImageInput, *, name: str = "<image>", max_pixels: int | None = None) -> np.ndarray:
    """Turn any accepted input into a 2-D or colour image array (not yet preprocessed).

    Parameters
    ----------
    item : SemImage, ndarray, PIL.Image.Image, bytes, str or os.PathLike
        Files and bytes are read with :func:`dass.sem.io.read_sem` (TIFF, PNG, JPEG).
    name : str
        Name used in error messages.

    Raises
    ------
    SemReadError
        Unreadable file or bytes, or an array/image of unusable shape or type.
    """
    from dass.sem.io import DEFAULT_MAX_PIXELS, read_sem

    if isinstance(item, SemImage):
        return item.image
    if isinstance(item, (bytes, bytearray, memoryview, str, os.PathLike)):
        sem = read_sem(item, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
        return sem.image
    if isinstance(item, np.ndarray):
        array = item
    else:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover
            Image = None
        if Image is None or not isinstance(item, Image.Image):
            raise SemReadError(
                f"{name}: cannot classify a {type(item).__name__}; pass a path, URL, bytes, "
                "numpy array, PIL image or SemImage"
            )
        img = item
        if img.mode in ("P", "PA"):
            img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else "RGB")
        elif img.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
            img = img.convert("L" if img.mode == "1" else "RGB")
        array = np.asarray(img)
    if array.ndim not in (2, 3) or array.size == 0 or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
        raise SemReadError(f"{name}: expected a 2-D grayscale or (H, W, 3|4) image, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise SemReadError(f"{name}: image array has non-numeric dtype {array.dtype}")
    return array


class Classifier:
    """A loaded SEM classifier.

    Attributes
    ----------
    model : torch.nn.Module
        The network, in eval mode, on :attr:`device`.
    info : ModelInfo
    device : str

    Examples
    --------
    >>> clf = Classifier.load("memory://model.pt")  # doctest: +SKIP
    >>> clf.classify(["a.tif", "b.png"])[0].category  # doctest: +SKIP
    'Nanowires'
    """

    def __init__(self, model: "torch.nn.Module", info: ModelInfo, *, representatives: dict[str, bytes] | None = None,
                 device: str = "cpu", source: str = "") -> None:
        self.model = model
        self.info = info
        self.device = device
        self.source = source
        self._representatives = dict(representatives or {})

    def __repr__(self) -> str:
        return f"<Classifier {self.info.name} ({self.info.architecture}, {len(self.info.classes)} classes) on {self.device}>"

    @classmethod
    def load(cls, source: str | os.PathLike | bytes, *, device: str = "auto") -> "Classifier":
        """Load a checkpoint (path, fsspec URL or bytes) once, onto `device` (``"auto"``: GPU if any).

        Raises
        ------
        dass.sem.checkpoint.CheckpointError
            When the file is missing or not a usable checkpoint.
        """
        from dass.sem.checkpoint import load_checkpoint
        from dass.sem.models import resolve_device

        dev = resolve_device(device)
        model, info, reps = load_checkpoint(source, device=dev)
        name = "<bytes>" if isinstance(source, (bytes, bytearray)) else os.fspath(source)
        log.info("loaded SEM classifier %s (%s) from %s on %s", info.name, info.architecture, name, dev)
        return cls(model, info, representatives=reps, device=dev, source=name)

    @property
    def classes(self) -> list[str]:
        return list(self.info.classes)

    def representative(self, category: str) -> bytes | None:
        """PNG bytes of the representative training image of `category`, or None."""
        return self._representatives.get(category)

    def prepare(self, item: ImageInput, *, name: str = "<image>") -> np.ndarray:
        """The model input for one item: ``preprocess(image, info.input_size)`` (float32, square)."""
        from dass.sem.databar import preprocess

        array = image_array(item, name=name)
        try:
            return preprocess(array, self.info.input_size)
        except ValueError as exc:
            raise SemReadError(f"{name}: {exc}") from None

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Softmax probabilities ``(N, n_classes)`` for preprocessed inputs ``(N, S, S)``."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).unsqueeze(1).to(self.device)
            probs = torch.softmax(self.model(x).float(), dim=1)
        return probs.cpu().numpy().astype(np.float64)

    def _prediction(self, probs: np.ndarray) -> Prediction:
        probs = probs / probs.sum()
        top = int(np.argmax(probs))
        scores = {c: float(p) for c, p in zip(self.info.classes, probs)}
        return Prediction(category=self.info.classes[top], certainty=float(probs[top]), scores=scores)

    def _run(self, prepared: list[tuple[int, np.ndarray]], batch_size: int, progress: Progress | None,
             total: int) -> dict[int, Prediction]:
        out: dict[int, Prediction] = {}
        if self.model.training:
            self.model.eval()
        for start in range(0, len(prepared), batch_size):
            chunk = prepared[start:start + batch_size]
            probs = self.predict_arrays(np.stack([a for _, a in chunk]))
            for (index, _), p in zip(chunk, probs):
                out[index] = self._prediction(p)
            if progress is not None:
                progress(min(start + batch_size, len(prepared)), total, "classified")
        return out

    def classify(self, images: Sequence[ImageInput], *, batch_size: int = 32,
                 progress: Progress | None = None) -> list[Prediction]:
        """Classify images in batches; one :class:`Prediction` per image, in input order.

        Parameters
        ----------
        images : sequence
            SemImage, numpy array, PIL image, file bytes, path or fsspec URL, mixed freely.
        batch_size : int, optional
            Images per forward pass (default 32).
        progress : callable, optional
            ``progress(done, total, message)`` after every batch.

        Raises
        ------
        SemReadError
            For the first item that cannot be read; the message names it. Use
            :meth:`classify_files` to get per-item errors instead.
        """
        if isinstance(images, (str, bytes, os.PathLike, np.ndarray, SemImage)):
            images = [images]
        batch_size = self._check_batch_size(batch_size)
        prepared = [(i, self.prepare(item, name=item_name(item, i))) for i, item in enumerate(images)]
        results = self._run(prepared, batch_size, progress, len(prepared))
        return [results[i] for i in range(len(prepared))]

    def classify_files(self, images: Sequence[ImageInput], *, names: Sequence[str] | None = None,
                       batch_size: int = 32, progress: Progress | None = None) -> list[Outcome]:
        """Classify what can be read; report why each other item failed.

        Parameters
        ----------
        images : sequence
            As for :meth:`classify`.
        names : sequence of str, optional
            A name per item (e.g. the uploaded file name) for the outcomes and messages.

        Returns
        -------
        list of Outcome
            In input order: ``prediction`` set for classified items, ``error`` (a one-line
            reason naming the item) for unreadable ones.
        """
        batch_size = self._check_batch_size(batch_size)
        images = list(images)
        if names is not None and len(names) != len(images):
            raise ValueError(f"names has {len(names)} entries for {len(images)} images")
        labels = [names[i] if names is not None else item_name(item, i) for i, item in enumerate(images)]
        outcomes = [Outcome(name=n) for n in labels]
        prepared = []
        for i, item in enumerate(images):
            try:
                prepared.append((i, self.prepare(item, name=labels[i])))
            except (SemReadError, ValueError, TypeError) as exc:
                outcomes[i].error = str(exc).replace("<bytes>", labels[i])
                log.info("SEM classify: skipping %s: %s", labels[i], exc)
        for i, prediction in self._run(prepared, batch_size, progress, len(prepared)).items():
            outcomes[i].prediction = prediction
        return outcomes

    @staticmethod
    def _check_batch_size(batch_size: int) -> int:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        return batch_size
