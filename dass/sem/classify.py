"""Batch inference: classify SEM images with a trained checkpoint.

The model is loaded once (:meth:`Classifier.load`) and put in its fastest inference form
(:func:`dass.sem.inference.accelerate`: the fastest of the eager, channels-last and, on CPU,
frozen traced module, timed on the machine; checked against the eager model, falling back
cleanly). Images are prepared with
:func:`dass.sem.databar.preprocess` -- the very function training uses. Several images run
on one worker thread per core (:attr:`Classifier.threads`, :meth:`Classifier.run`), the
caller's included: each worker prepares the next image, or runs a forward pass at one
intra-op thread over the inputs that are ready, whichever is due. Decoding and the network
overlap, every core stays busy to the end, only a few small model inputs are held, and
nothing waits for a batch to fill. On a 2-core machine two such forward passes side by side
do about twice the work of one pass at two intra-op threads for the small networks, whose
layers are too small for torch's threads to share well. A single image takes a direct path
on the calling thread, at one intra-op thread or all the cores, whichever was faster for the
model when it loaded.

:meth:`Classifier.classify` raises :class:`~dass.sem.io.SemReadError` naming the
first unreadable item; :meth:`Classifier.classify_files` instead returns one
:class:`Outcome` per input -- a prediction or the reason it failed -- which is
what a service that accepts many uploads needs.
"""

from __future__ import annotations

import logging
import os
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
        from dass.sem.inference import accelerate as _accelerate

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

        self._single_threads: int | None = None
        self.threads = torch.get_num_threads()
        if device == "cpu":
            self.single_threads  # noqa: B018 - measured now, at load, not on the first request

    @property
    def threads(self) -> int:
        """Cores a run uses (default: torch's intra-op threads, one per core): the workers of a
        run of several images (:meth:`run`), and the most intra-op threads of a single
        image's forward pass (:attr:`single_threads`)."""
        return self._threads

    @threads.setter
    def threads(self, n: int) -> None:
        self._threads = max(1, int(n))
        self._single_threads = None  # measured again for the new count

    @property
    def single_threads(self) -> int:
        """Intra-op threads of a single image's forward pass on the CPU: the faster of one and
        :attr:`threads` (:func:`dass.sem.inference.single_image_threads`, timed once)."""
        if self._single_threads is None:
            if self.device != "cpu" or self._threads <= 1:
                self._single_threads = self._threads
            else:
                import torch

                from dass.sem.inference import single_image_threads

                before = torch.get_num_threads()
                torch.set_num_threads(self._threads)
                try:
                    self._single_threads = single_image_threads(self.runner, input_size=self.info.input_size,
                                                                device=self.device)
                finally:
                    torch.set_num_threads(before)
        return self._single_threads

    def __repr__(self) -> str:
        return (f"<Classifier {self.info.name} ({self.info.architecture}, {len(self.info.classes)} classes) "
                f"on {self.device}, {self.acceleration}>")

    @classmethod
    def load(cls, source: str | os.PathLike | bytes, *, device: str = "auto", accelerate: str = "auto") -> "Classifier":
        """Load a checkpoint (path, fsspec URL or bytes) once, onto `device` (``"auto"``: GPU if any).

        Parameters
        ----------
        accelerate : str
            How to speed inference up (:func:`dass.sem.inference.accelerate`): ``"auto"`` (default),
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

    def _use_threads(self, n: int) -> None:
        """Intra-op threads of this thread's next forward passes on the CPU (at least one).

        Only the calling thread's setting changes (OpenMP keeps it per thread); :meth:`run`
        restores the caller's at its end.
        """
        if self.device != "cpu":
            return
        import torch

        n = max(1, int(n))
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)

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
        input, or None to skip item i) and the forward passes run on :attr:`threads` workers:
        this thread and ``threads - 1`` helper threads (``sem-worker-N``). A worker runs the
        network on the ready inputs once there are a quarter of `batch_size` of them (at most
        `batch_size`), or once every item is being prepared (then the last ones are shared
        between the workers); else it prepares the next item. So at most about a quarter
        batch per worker is held ahead of the network. On the CPU each worker's forward pass
        uses one intra-op thread: the workers never want more cores than :attr:`threads`.

        One item takes the direct path on this thread, without helpers, at
        :attr:`single_threads` intra-op threads -- when that is several, one fewer once
        `prepared` has let the caller start its own work.
        The calling thread's torch thread count is restored at the end.

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
            Called (on a worker thread) once every item has been produced -- e.g. to start
            storing the files while the last batches run -- or, when the run fails first, at
            its end.

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
                    # one thread, or all the cores but one when the caller stores meanwhile
                    n = self.single_threads
                    self._use_threads(n - 1 if prepared is not None and n > 1 else n)
                    out[0] = self._prediction(self.predict_arrays(x[None])[0])
                    if progress is not None:
                        progress(1, 1, "classified")
                return out
            return self._parallel(count, produce, out, batch_size, progress, prepared)
        finally:
            if self.device == "cpu" and torch.get_num_threads() != threads_before:
                torch.set_num_threads(threads_before)

    def _parallel(self, count: int, produce: Callable[[int], "np.ndarray | None"], out: dict[int, Prediction],
                  batch_size: int, progress: Progress | None, prepared: Callable[[], None] | None
                  ) -> dict[int, Prediction]:
        """:meth:`run` for more than one item: :attr:`threads` workers, the caller one of them.

        Every worker does whatever is due next: a forward pass (at one intra-op thread on the
        CPU) of the inputs that are ready once there are a quarter batch of them, or once
        nothing is left to prepare (the last ones split between the workers); otherwise it
        prepares the next item. So every core is busy until the end, and none is ever asked
        for two things at once.
        """
        workers = max(1, min(int(self.threads), count))
        min_batch = max(1, batch_size // 4)
        cond = threading.Lock()  # guards ready, state, out and failure
        ready: list[tuple[int, np.ndarray]] = []
        state = {"next": 0, "produced": 0, "done": 0, "prepared_called": False}
        failure: list[BaseException] = []
        report = threading.Lock()  # progress() is called from one thread at a time

        def call(callback: Callable[[], None] | None) -> None:
            if callback is None:
                return
            try:
                callback()
            except Exception:  # pragma: no cover - a callback bug must not hang or fail the run
                log.exception("SEM classify: the prepared() callback failed")

        def claim() -> tuple[str, Any]:
            """Under ``cond``: ("forward", inputs), ("produce", index) or ("stop", None)."""
            if failure:
                return "stop", None
            left = state["next"] < count
            if ready and (len(ready) >= min_batch or not left):
                n = len(ready) if left else -(-len(ready) // workers)  # the last ones: shared
                taken = ready[: min(n, batch_size)]
                del ready[: len(taken)]
                return "forward", taken
            if left:
                state["next"] += 1
                return "produce", state["next"] - 1
            return "stop", None  # any item still being prepared is run by its worker

        def work() -> None:
            self._use_threads(1)
            while True:
                with cond:
                    what, arg = claim()
                if what == "stop":
                    return
                try:
                    if what == "produce":
                        x = produce(arg)
                        call_prepared = False
                        with cond:
                            if x is not None:
                                ready.append((arg, x))
                            state["produced"] += 1
                            if state["produced"] == count and not state["prepared_called"]:
                                state["prepared_called"] = call_prepared = True
                        if call_prepared:
                            call(prepared)
                        continue
                    index = [i for i, _ in arg]
                    probs = self.predict_arrays(np.stack([x for _, x in arg]))
                    predictions = [self._prediction(p) for p in probs]
                    with cond:
                        out.update(zip(index, predictions))
                        state["done"] += len(index)
                    if progress is not None:
                        with report:  # the count as it is now: never smaller than one reported before
                            with cond:
                                done = state["done"]
                            progress(done, count, "classified")
                except BaseException as exc:  # stops every worker; raised on the calling thread
                    with cond:
                        failure.append(exc)
                    return

        helpers = [threading.Thread(target=work, name=f"sem-worker-{k}", daemon=True) for k in range(1, workers)]
        for thread in helpers:
            thread.start()
        try:
            work()
        finally:
            for thread in helpers:
                thread.join()
            if not state["prepared_called"]:  # a failure stopped the preparation
                call(prepared)
        if failure:
            raise failure[0]
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
