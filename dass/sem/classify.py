"""Batch inference: classify SEM images with a trained checkpoint.

The model is loaded once (:meth:`Classifier.load`) and put in its fastest inference form
(:func:`dass.sem.models.accelerate`: the fastest of the eager, channels-last and, on CPU,
frozen traced module, timed on the machine; checked against the eager model, falling back
cleanly). Images are prepared with
:func:`dass.sem.databar.preprocess` -- the very function training uses -- one at a time on a
helper thread while the previous batch runs through the network (:meth:`Classifier.run`):
decoding and preprocessing overlap the forward pass, only a bounded queue of small model
inputs is held, and a batch is whatever is ready when the network is free, so nothing waits
for a batch to fill. A single image takes a direct path without the thread. The forward
pass leaves one core to the preparing thread while it runs (:attr:`Classifier.threads`).

:meth:`Classifier.classify` raises :class:`~dass.sem.io.SemReadError` naming the
first unreadable item; :meth:`Classifier.classify_files` instead returns one
:class:`Outcome` per input -- a prediction or the reason it failed -- which is
what a service that accepts many uploads needs.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
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
    notes: list[str] = field(default_factory=list)  # how the file was read (e.g. 12-bit data scaled)

    @property
    def ok(self) -> bool:
        return self.prediction is not None

    def to_json(self) -> dict[str, Any]:
        if self.prediction is None:
            return {"name": self.name, "status": "error", "reason": self.error}
        return {"name": self.name, "status": "ok", **self.prediction.to_json(), "notes": list(self.notes)}


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
                 device: str = "cpu", source: str = "", accelerate: str = "eager") -> None:
        from dass.sem.models import accelerate as _accelerate

        self.model = model
        self.info = info
        self.device = device
        self.source = source
        self._representatives = dict(representatives or {})
        if model.training:
            model.eval()
        #: The module inference calls (the accelerated form of :attr:`model`) and its mode.
        self.runner, self.acceleration = _accelerate(model, input_size=info.input_size, device=device,
                                                     mode=accelerate)
        import torch

        #: Intra-op threads of a forward pass when nothing else of the run competes for the
        #: cores (default: torch's, one per core); one fewer while the helper thread prepares
        #: inputs (:meth:`run`).
        self.threads = torch.get_num_threads()

    def __repr__(self) -> str:
        return (f"<Classifier {self.info.name} ({self.info.architecture}, {len(self.info.classes)} classes) "
                f"on {self.device}, {self.acceleration}>")

    @classmethod
    def load(cls, source: str | os.PathLike | bytes, *, device: str = "auto", accelerate: str = "auto") -> "Classifier":
        """Load a checkpoint (path, fsspec URL or bytes) once, onto `device` (``"auto"``: GPU if any).

        Parameters
        ----------
        accelerate : str
            How to speed inference up (:func:`dass.sem.models.accelerate`): ``"auto"`` (default),
            ``"eager"``, ``"channels_last"``, ``"freeze"``, ``"compile"``.

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
        clf = cls(model, info, representatives=reps, device=dev, source=name, accelerate=accelerate)
        log.info("loaded SEM classifier %s (%s) from %s on %s, %s", info.name, info.architecture, name, dev,
                 clf.acceleration)
        return clf

    @property
    def classes(self) -> list[str]:
        return list(self.info.classes)

    def representative(self, category: str) -> bytes | None:
        """PNG bytes of the representative training image of `category`, or None."""
        return self._representatives.get(category)

    def prepare(self, item: ImageInput, *, name: str = "<image>") -> np.ndarray:
        """The model input for one item: ``preprocess(image, info.input_size)`` (float32, square).

        Files and bytes are read with :func:`dass.sem.io.read_sem`; a data bar whose position
        the file records (FEI) is cropped there, others are detected.
        """
        from dass.sem.databar import preprocess
        from dass.sem.io import read_sem

        if isinstance(item, (bytes, bytearray, memoryview, str, os.PathLike)):
            item = read_sem(item)
        array = item if isinstance(item, SemImage) else image_array(item, name=name)
        try:
            return preprocess(array, self.info.input_size)
        except ValueError as exc:
            raise SemReadError(f"{name}: {exc}") from None

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Softmax probabilities ``(N, n_classes)`` (float32) for preprocessed inputs ``(N, S, S)``."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).unsqueeze(1)
        if self.device != "cpu":
            x = x.pin_memory().to(self.device, non_blocking=True)
        with torch.inference_mode():
            probs = torch.softmax(self.runner(x.contiguous(memory_format=torch.channels_last)).float(), dim=1)
        return probs.cpu().numpy()

    def _set_threads(self, busy: bool) -> None:
        """Intra-op threads of this thread's next forward pass: :attr:`threads`, one fewer when
        `busy` (other work of the run -- decoding, storing -- uses a core meanwhile).

        Why: torch's OpenMP threads wait for each other at every layer; one more busy thread
        than cores makes them wait for a descheduled peer, and a forward pass of a small
        network then takes several times longer (``bench/sem.py``: mobilenet_v3_small with 2
        threads beside a decoding thread on 2 cores). Only the calling thread's setting
        changes (OpenMP keeps it per thread).
        """
        if self.device != "cpu":
            return
        import torch

        want = max(1, self.threads - 1) if busy else max(1, self.threads)
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)

    def _prediction(self, probs: np.ndarray) -> Prediction:
        probs = probs.astype(np.float64)
        probs = probs / probs.sum()
        top = int(np.argmax(probs))
        scores = {c: float(p) for c, p in zip(self.info.classes, probs)}
        return Prediction(category=self.info.classes[top], certainty=float(probs[top]), scores=scores)

    def run(self, count: int, produce: Callable[[int], "np.ndarray | None"], *, batch_size: int = 32,
            progress: Progress | None = None, prepared: Callable[[], None] | None = None) -> dict[int, Prediction]:
        """Classify `count` items whose model inputs ``produce(i)`` makes, overlapping the two.

        ``produce(i)`` (decode + :meth:`prepare`, or anything returning an ``(S, S)`` float32
        input, or None to skip item i) runs on a helper thread, one item at a time, into a
        queue of at most ``2 * batch_size`` inputs; this thread runs the network on whatever
        is ready (at most `batch_size`) as soon as it is free. One item: no thread at all.

        Cores are not oversubscribed: while the helper thread prepares inputs, and for a single
        item once `prepared` has let the caller start its own work, a forward pass uses one
        intra-op thread fewer than :attr:`threads`; afterwards all of them. The calling
        thread's torch thread count is restored at the end.

        Parameters
        ----------
        count : int
            Number of items.
        produce : callable
            ``produce(i) -> ndarray | None``. An exception stops the run and is raised here.
        batch_size : int
            Most images per forward pass.
        progress : callable, optional
            ``progress(done, total, "classified")`` after every forward pass.
        prepared : callable, optional
            Called (on the helper thread) once every item has been produced -- e.g. to start
            storing the files while the last batches run.

        Returns
        -------
        dict
            Item index -> :class:`Prediction`, for the items not skipped.
        """
        batch_size = self._check_batch_size(batch_size)
        out: dict[int, Prediction] = {}
        if count <= 0:
            if prepared is not None:
                prepared()
            return out
        if self.device == "cpu":
            import torch

            threads_before = torch.get_num_threads()
        try:
            if count == 1:  # the single-image path: no thread, no queue, no batching delay
                try:
                    x = produce(0)
                finally:
                    if prepared is not None:
                        prepared()
                if x is not None:
                    self._set_threads(busy=prepared is not None)  # the caller stores meanwhile
                    out[0] = self._prediction(self.predict_arrays(x[None])[0])
                    if progress is not None:
                        progress(1, 1, "classified")
                return out
            return self._overlapped(count, produce, out, batch_size, progress, prepared)
        finally:
            if self.device == "cpu" and torch.get_num_threads() != threads_before:
                torch.set_num_threads(threads_before)

    def _overlapped(self, count: int, produce: Callable[[int], "np.ndarray | None"], out: dict[int, Prediction],
                    batch_size: int, progress: Progress | None, prepared: Callable[[], None] | None
                    ) -> dict[int, Prediction]:
        """:meth:`run` for more than one item: the helper thread and the bounded queue."""
        q: queue.Queue = queue.Queue(maxsize=2 * batch_size)
        done_marker = object()
        stop = threading.Event()
        producing = threading.Event()
        producing.set()

        def worker() -> None:
            try:
                for i in range(count):
                    if stop.is_set():
                        return
                    x = produce(i)
                    if x is not None:
                        q.put((i, x))
            except BaseException as exc:  # handed to the consumer, raised there
                q.put((None, exc))
            finally:
                producing.clear()
                if prepared is not None:
                    try:
                        prepared()
                    except Exception:  # pragma: no cover - a callback bug must not hang the run
                        log.exception("SEM classify: the prepared() callback failed")
                q.put(done_marker)

        thread = threading.Thread(target=worker, name="sem-prepare", daemon=True)
        thread.start()
        size = self.info.input_size
        buffer = np.empty((batch_size, size, size), np.float32)
        min_batch = max(1, batch_size // 4)
        finished, n_done = False, 0
        try:
            while not finished:
                entries = [q.get()]
                while len(entries) < batch_size:
                    try:
                        entries.append(q.get_nowait())
                    except queue.Empty:
                        # a batch of one or two costs about twice as much per image as one of
                        # a quarter batch: wait for that many while more are being prepared
                        if len(entries) >= min_batch or not producing.is_set() or entries[-1] is done_marker:
                            break
                        try:
                            entries.append(q.get(timeout=0.05))
                        except queue.Empty:
                            continue
                index = []
                for entry in entries:
                    if entry is done_marker:
                        finished = True
                        break
                    i, x = entry
                    if i is None:
                        raise x
                    buffer[len(index)] = x
                    index.append(i)
                if index:
                    self._set_threads(busy=producing.is_set())
                    probs = self.predict_arrays(buffer[: len(index)])
                    for i, p in zip(index, probs):
                        out[i] = self._prediction(p)
                    n_done += len(index)
                    if progress is not None:
                        progress(n_done, count, "classified")
        finally:
            stop.set()
            while thread.is_alive():  # let a worker blocked on a full queue finish
                try:
                    q.get(timeout=0.05)
                except queue.Empty:
                    pass
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
        images = list(images)

        def produce(i: int) -> np.ndarray:
            return self.prepare(images[i], name=item_name(images[i], i))

        results = self.run(len(images), produce, batch_size=batch_size, progress=progress)
        return [results[i] for i in range(len(images))]

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

        def produce(i: int) -> np.ndarray | None:
            try:
                item = images[i]
                if isinstance(item, (bytes, bytearray, memoryview, str, os.PathLike)):
                    from dass.sem.io import read_sem

                    item = read_sem(item)
                if isinstance(item, SemImage):
                    outcomes[i].notes = list(item.notes)
                return self.prepare(item, name=labels[i])
            except (SemReadError, ValueError, TypeError) as exc:
                outcomes[i].error = str(exc).replace("<bytes>", labels[i])
                log.info("SEM classify: skipping %s: %s", labels[i], exc)
                return None

        for i, prediction in self.run(len(images), produce, batch_size=batch_size, progress=progress).items():
            outcomes[i].prediction = prediction
        return outcomes

    @staticmethod
    def _check_batch_size(batch_size: int) -> int:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        return batch_size
