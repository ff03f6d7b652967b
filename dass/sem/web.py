"""SEM image classification in the dass service: ``api/classify…`` and the ``sem`` page.

Why one module: the SEM stack's whole part of the service (its routes, the page, the
classifier it keeps loaded, uploads, previews, confirm) shares one loaded model and one set of
limits; it is the stack's plug-in (``web:`` in stacks.yaml), read as one piece.

- ``POST api/classify``: images (multipart ``files``, one or many, or ``.zip`` archives of
  images, and an optional ``proposal``) are first stored as a new dataset of the proposal
  (:func:`dass.sem.labels.store_upload`), then classified; or JSON ``{"dataset", "paths"}``
  classifies images already in a dataset the caller may use. Each file is judged on its own:
  an empty, oversized, corrupt or non-image file gets ``{"status": "error", "reason"}`` while
  the others are classified, and the answer is 200 even when every file failed (the request
  itself was fine). 4xx is for malformed requests, too many files or too large a request.
- ``GET api/classify/model``: the loaded model (architecture, classes, training data, with the
  ``synthetic`` flag, metrics).
- ``GET api/classify/categories/{category}/representative``: a representative training image
  of a category (PNG, from the checkpoint).
- ``GET api/classify/preview?dataset=<proposal>/<name>&path=<file>``: a PNG preview of an image
  of a dataset the caller may see (TIFF included), data bar outlined; made by the service on
  the first request and cached in the dataset (:mod:`dass.sem.preview`). Every classified image
  has its preview URL in the answer; making previews is kept out of the classification
  itself, which runs at the speed of the model.
- ``GET api/classify/{id}``: one classification; ``POST api/classify/{id}/confirm``
  ``{"category": optional}`` stores the label (:func:`dass.sem.labels.confirm`).
- ``GET sem``: the upload page (drag-and-drop, results with score bars, confirm/change).

The model is the registry's default (or ``c.SemClassifyService.model``), loaded on the first
request that needs it (or at start with ``preload``) in its fastest inference form
(``c.SemClassifyService.accelerate``); torch is imported only then. A request's images are
decoded, preprocessed and classified by one worker per core (``c.SemClassifyService.threads``,
:meth:`dass.sem.classify.Classifier.run`): each worker reads and decodes one image at a time,
or runs a forward pass at one intra-op thread over the inputs that are ready; only a few small
model inputs wait, never every decoded image. Uploads are stored while the last batches run.
The event loop never blocks.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from urllib.parse import urlencode
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import Bool, CaselessStrEnum, Integer, Unicode
from traitlets.config import LoggingConfigurable

from ..errors import DassError
from ..data.errors import DassDataError
from ..data.metadata import METADATA_FILE, NAME_RE
from .labels import SIDECAR_SUFFIX, LabelError, confirm, is_member, record_classifications, store_upload, \
    visible_classification
from ..service.extensions import NavLink, ServiceExtension
from ..service.handlers import ApiError, BaseHandler
from ..service.uploads import Spool, SpooledFile, expand_zip, parse_multipart
from ..service.pages import PageHandler
from .inference import ACCELERATIONS
from .nexus import EXPORT_NAME as NEXUS_EXPORT
from .preview import is_preview_path, preview_path

__all__ = ["ModelUnavailable", "SemClassifyService", "SemWeb", "default_handlers"]

MiB = 1024 * 1024
TEMPLATES = Path(__file__).resolve().parent / "templates"
_ZIP_MAGIC = b"PK\x03\x04"


class ModelUnavailable(DassError, status=503):
    """No classifier can be loaded; the message says how to train and register one."""


@dataclass
class FileItem:
    """One uploaded (or dataset) file on its way through the request."""

    file: str
    data: bytes | None = None  # while it is decoded or stored, one item at a time
    spooled: SpooledFile | None = None  # where an uploaded file lies in the request's spool
    path: str | None = None  # repository path inside the dataset (dataset mode)
    reason: str | None = None
    prepared: bool = False  # decoded and turned into a model input
    metadata: dict[str, Any] | None = None  # normalized instrument metadata
    notes: list[str] | None = None  # what to know about how the file was read (12-bit, ...)
    preview: bytes | None = None  # PNG preview, until cached in the dataset


class SemClassifyService(LoggingConfigurable):
    """The classifier behind ``api/classify``: which model, the limits, where it runs."""

    model = Unicode(
        "",
        help="""Name of the registered model (``dass sem models``, under ``models/`` in the
        repository storage) that ``api/classify`` uses. Empty: the registry's default model,
        looked up at every request, so ``set_default`` takes effect without a restart.""",
    ).tag(config=True)

    max_file_bytes = Integer(
        25 * MiB,
        help="""Largest image file (bytes) accepted by ``api/classify``; a larger file is
        refused with a per-file error while the other files are classified. Also the limit of
        each member of an uploaded ``.zip``.""",
    ).tag(config=True)

    max_files = Integer(
        500,
        help="""Most images one ``api/classify`` request may hold (members of ``.zip``
        archives counted one by one); more answers 413.""",
    ).tag(config=True)

    max_zip_ratio = Integer(
        200,
        help="""Largest expansion ratio (uncompressed / compressed size) of a member of an
        uploaded ``.zip``; a member above it is refused as a possible zip bomb (a per-file
        error) without being decompressed. Image formats are compressed already: real SEM
        images stay far below it.""",
    ).tag(config=True)

    max_request_bytes = Integer(
        512 * MiB,
        help="""Largest ``api/classify`` request body (bytes); a larger one answers 413 before
        it is read (from its ``Content-Length``), or as soon as a chunked one passes it. Also
        the most the ``.zip`` archives of one request may expand to, all together: checked from
        their listing before anything is inflated, and again while the members are read. The
        body and the files taken out of it are spooled to disk (``c.DassService.spool_dir``),
        not kept in memory.""",
    ).tag(config=True)

    max_pixels = Integer(
        100_000_000,
        help="""Largest image (pixels, width x height) decoded; a larger one gets a per-file
        error. Checked from the file header, before decoding, so a small file cannot expand
        into gigabytes.""",
    ).tag(config=True)

    max_decode_bytes = Integer(
        512 * MiB,
        help="""Most memory (bytes) reading one image and preparing it for the classifier may
        take, estimated from the file header before anything is decoded (width x height x
        (bytes per decoded pixel + 17): about 18 bytes per pixel of an 8-bit gray image, so
        512 MiB admits 29 megapixels, a 6144 x 4096 scan); a larger image gets a per-file
        error. With request bodies and ``.zip`` members spooled to disk
        (``c.DassService.spool_bytes``, ``spool_dir``) and images decoded one at a time per
        worker (``threads``), this bounds what one ``api/classify`` request adds to the
        service's memory: about this plus one file (``max_file_bytes``) per worker, and the
        forward passes of at most ``batch_size`` images each.""",
    ).tag(config=True)

    batch_size = Integer(
        32,
        help="""Images per forward pass of the classifier. Larger batches are faster on a GPU
        and need more memory.""",
    ).tag(config=True)

    device = Unicode(
        "auto",
        help="""Where the classifier runs: ``auto`` (the GPU when torch sees one, else the
        CPU), ``cpu``, ``cuda`` or ``cuda:N``.""",
    ).tag(config=True)

    accelerate = CaselessStrEnum(
        list(ACCELERATIONS),
        default_value="auto",
        help="""How the classifier is sped up for inference (``dass.sem.inference.accelerate``):
        ``auto`` (the fastest of the plain module, channels-last and, on CPU, a frozen traced
        module, timed on this machine when the model loads),
        ``eager`` (the plain module), ``channels_last``, ``freeze`` or ``compile``
        (``torch.compile``, needs a C++ compiler on CPU). Every speed-up is checked against the
        plain module when the model loads and falls back to it when it fails.""",
    ).tag(config=True)

    threads = Integer(
        0,
        help="""Cores the classifier uses; 0: torch's default intra-op threads, one per core. A
        request of several images runs on that many workers: each decodes and preprocesses the
        next image, or runs a forward pass at one intra-op thread over the inputs that are
        ready, whichever is due, so decoding and the network overlap and the workers never
        want more cores than this. (Torch's threads wait for each other at every layer: on a
        2-core machine two forward passes side by side did about twice the work of one pass at
        two threads for the small networks.) A single image's forward pass runs at one thread
        or at this many, whichever was faster for the model when it loaded, one fewer while
        its upload is stored.""",
    ).tag(config=True)

    openmp_wait_policy = CaselessStrEnum(
        ["passive", "active", ""],
        default_value="passive",
        help="""How torch's OpenMP threads wait for each other (``OMP_WAIT_POLICY``, set when the
        service starts, before torch is imported; an ``OMP_WAIT_POLICY`` already in the
        environment wins): ``passive`` (sleep), ``active`` (spin), or empty for OpenMP's
        default. Spinning threads keep cores that decoding, storing and other processes need;
        on a busy 2-core machine a forward pass of mobilenet_v3_small took four times as long
        with the default as with ``passive``.""",
    ).tag(config=True)

    preview_size = Integer(
        512,
        help="""Longest side (pixels) of the PNG previews the service makes of uploaded and stored
        images (TIFF included) and caches in the dataset under ``.dass-previews/``.""",
    ).tag(config=True)

    export_nexus_on_confirm = Bool(
        False,
        help="""After every confirmed label, export the dataset's labels and classifier outputs
        as NeXus NXem (``labels.nxs`` in the dataset, like ``dass sem export-nexus``). NXem needs
        the sample's ``atom_types`` and ``preparation_date``: datasets without them in
        ``domain.sample`` are not exported (the answer's ``nexus.error`` says why); the label
        itself is stored either way.""",
    ).tag(config=True)

    preload = Bool(
        False,
        help="""Load the model in a background thread when the service starts, so that the
        first upload does not wait for torch and the checkpoint. Off: loaded by the first
        request that needs it.""",
    ).tag(config=True)

    def __init__(self, *, storage: Any, catalog: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.storage = storage
        self.catalog = catalog
        self._classifier: Any = None
        self._loaded: str | None = None
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        from .inference import set_openmp_wait_policy

        set_openmp_wait_policy(self.openmp_wait_policy)  # before torch is imported, or not at all

    # -- the model ---------------------------------------------------------------------------

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The single inference thread (torch parallelizes inside one forward pass)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sem-classify")
        return self._executor

    def registry(self) -> Any:
        from .registry import ModelRegistry

        return ModelRegistry(self.storage)

    def model_name(self) -> str:
        """The name of the model to use; raises :class:`ModelUnavailable` when there is none."""
        from .registry import RegistryError

        if self.model:
            return self.model
        try:
            name = self.registry().default_name()
        except (RegistryError, DassDataError) as e:
            raise ModelUnavailable(f"the model registry cannot be read: {e}") from e
        if not name:
            raise ModelUnavailable(
                "no SEM classifier is registered: train one with `dass sem train DATA_URL --out DIR "
                "--register NAME --default` (or the training notebook as a job), or register a "
                "checkpoint with `dass sem models register model.pt --default`; then try again"
            )
        return name

    def banner(self) -> dict[str, Any] | None:
        """What every page says about the SEM classifier in use, read from the registry's
        ``model.json`` (no torch): ``{"name", "architecture", "data", "synthetic"}``, or None
        when no model is registered or the registry cannot be read."""
        from .registry import RegistryError

        try:
            name = self.model_name()
            info = self.registry().info(name)
        except (ModelUnavailable, RegistryError, DassDataError, OSError):
            return None
        trained = info.trained_on or {}
        return {"name": info.name, "architecture": info.architecture,
                "data": str(trained.get("url") or "unknown data"), "synthetic": bool(trained.get("synthetic"))}

    def classifier_sync(self) -> Any:
        """The loaded :class:`dass.sem.classify.Classifier` (loading it when needed).

        Raises
        ------
        ModelUnavailable
            When no model is registered or the chosen one cannot be loaded.
        """
        name = self.model_name()
        with self._lock:
            if self._classifier is not None and self._loaded == name:
                return self._classifier
            from .checkpoint import CheckpointError
            from .registry import RegistryError

            try:
                classifier = self.registry().load(name, device=self.device, accelerate=self.accelerate)
            except (RegistryError, CheckpointError, DassDataError) as e:
                raise ModelUnavailable(
                    f"the SEM classifier {name!r} cannot be loaded: {e}; register a working model "
                    "or set c.SemClassifyService.model"
                ) from e
            if self.threads > 0:
                classifier.threads = self.threads
            self.log.info("SEM classifier %s (%s) loaded on %s, %s, %d thread(s)", name,
                          classifier.info.architecture, classifier.device, classifier.acceleration,
                          classifier.threads)
            self._classifier, self._loaded = classifier, name
            return classifier

    def unload(self) -> None:
        """Forget the loaded model; the next request loads it again (e.g. after ``device`` changed)."""
        with self._lock:
            self._classifier, self._loaded = None, None

    async def classifier(self) -> Any:
        """:meth:`classifier_sync` on the inference thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.classifier_sync)

    async def classify(self, classifier: Any, items: list[FileItem], read: Any = None,
                       prepared: asyncio.Event | None = None) -> dict[int, Any]:
        """Decode, preview, preprocess and classify `items`, overlapping preparation and inference.

        Parameters
        ----------
        classifier : dass.sem.classify.Classifier
        items : list of FileItem
            Items with ``data`` (or a ``reason``); each gets ``prepared``, ``metadata`` and
            ``notes``, or a ``reason``.
        read : callable, optional
            ``read(item)`` fills ``item.data`` first (dataset files), on the worker preparing it.
        prepared : asyncio.Event, optional
            Set once every item is prepared, while the last batches may still run.

        Returns
        -------
        dict
            Index in `items` -> :class:`dass.sem.classify.Prediction`.
        """
        loop = asyncio.get_running_loop()

        def produce(i: int) -> Any:
            item = items[i]
            if read is not None:
                read(item)
            x = self.prepare_item(item, classifier)
            if read is not None:
                item.data = None  # dataset files: one in memory at a time
            return x

        def done() -> None:
            if prepared is not None:
                loop.call_soon_threadsafe(prepared.set)

        return await loop.run_in_executor(
            self.executor, lambda: classifier.run(len(items), produce, batch_size=self.batch_size, prepared=done)
        )

    def start(self) -> None:
        """Start loading the model in the background when ``preload`` is set."""
        if not self.preload:
            return

        def load() -> None:
            try:
                self.classifier_sync()
            except ModelUnavailable as e:
                self.log.warning("SEM classifier not preloaded: %s", e)

        self.executor.submit(load)

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- decoding ------------------------------------------------------------------------------

    def decode(self, item: FileItem) -> Any:
        """Check one file and decode it as an SEM image (a ``SemImage``), or set its ``reason``."""
        from .io import SemReadError, read_sem

        data = item.data
        if item.reason:
            return None
        if not data:
            item.reason = "empty file: it has no data"
            return None
        if len(data) > self.max_file_bytes:
            item.reason = (f"file too large: {len(data)} bytes, the limit is {self.max_file_bytes} "
                           "(c.SemClassifyService.max_file_bytes)")
            return None
        try:
            return read_sem(data, max_pixels=self.max_pixels, max_decode_bytes=self.max_decode_bytes)
        except SemReadError as e:
            item.reason = (str(e).replace("<bytes>", item.file)
                           .replace("pass a larger max_pixels to read it", "the limit is c.SemClassifyService.max_pixels")
                           .replace("pass a larger max_decode_bytes to read it",
                                    "the limit is c.SemClassifyService.max_decode_bytes; send a smaller image"))
        except Exception as e:  # a decoder bug must not fail the other files
            self.log.warning("SEM upload %s cannot be decoded: %s", item.file, e, exc_info=True)
            item.reason = f"not a readable image: {type(e).__name__}: {e}"
        return None

    def prepare_item(self, item: FileItem, classifier: Any) -> Any:
        """Decode one item and make its model input; the full image is then dropped.

        Returns the model input, or None (with ``item.reason`` set) when the file is unusable.
        """
        from .io import SemReadError

        sem = self.decode(item)
        if sem is None:
            return None
        try:
            x = classifier.prepare(sem, name=item.file)
        except SemReadError as e:
            item.reason = str(e)
            return None
        item.metadata, item.notes, item.prepared = dict(sem.metadata), list(sem.notes), True
        return x

    def store_previews(self, folder: str, items: list[FileItem]) -> None:
        """Write the items' previews into the dataset's preview cache (errors are logged only)."""
        for item in items:
            if item.preview is None or item.path is None:
                continue
            path = f"{folder}/{preview_path(item.path)}"
            try:
                with self.storage.translate_errors(f"writing {self.storage.url_of(path)}"):
                    self.storage.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
                    self.storage.fs.pipe_file(path, item.preview)
            except DassDataError as e:
                self.log.warning("SEM preview %s not cached: %s", path, e)
            item.preview = None

    def model_json(self, classifier: Any, base_url: str) -> dict[str, Any]:
        """The model description answered by ``api/classify/model`` and with every result."""
        info = classifier.info
        api = url_path_join(base_url, "api/classify/categories")
        trained = dict(info.trained_on or {})
        return {
            "name": info.name,
            "architecture": info.architecture,
            "device": str(classifier.device),
            "input_size": info.input_size,
            "classes": [
                {"id": c, "display_name": d, "representative": f"{api}/{c}/representative"}
                for c, d in zip(info.classes, info.display_names)
            ],
            "trained_on": trained,
            "trained_on_text": info.describe_data(),
            "synthetic": bool(trained.get("synthetic")),
            "metrics": {k: v for k, v in (info.metrics or {}).items() if k in ("accuracy", "n_val", "per_class")},
            "created": info.created,
            "dass_version": info.dass_version,
            "notes": info.notes,
        }


# -- handlers --------------------------------------------------------------------------------------


class SemBase(BaseHandler):
    @property
    def sem(self) -> SemClassifyService:
        return self.settings["sem_service"]

    async def loaded_classifier(self) -> Any:
        """The classifier; :class:`ModelUnavailable` (503, saying how to register one) without."""
        return await self.sem.classifier()


class ClassifyHandler(SemBase):
    """``POST api/classify``: store and classify uploaded images, or classify dataset files.

    The body is spooled to disk as it arrives (``body_in_memory = False``); the files of a
    multipart body and the members of its ``.zip`` archives go, one after another, into one
    unnamed temporary file of the request (:class:`dass.service.uploads.Spool`), and are read
    back one at a time per worker to be decoded, and one at a time to be stored. What one
    request holds in memory is one file and one decoded image (``max_decode_bytes``) per
    worker (``c.SemClassifyService.threads``) and the model's batches, however many files it
    sends.
    """

    audit_action = "classify"  # classify.upload or classify.read once the request says which
    stream_body = True
    body_in_memory = False

    #: the files of this request's upload, closed (and so deleted) before the answer leaves
    _spool: Spool | None = None

    def body_limit(self) -> int:
        # BaseHandler refuses a larger body with 413 JSON, declared or counted as it arrives
        return self.sem.max_request_bytes

    def finish(self, chunk: Any = None) -> Any:
        if self._spool is not None:  # every thread that read it is done: the answer is complete
            self._spool.close()
        return super().finish(chunk)

    async def post(self) -> None:
        self.query_args(())
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            limit = self.limits.max_body_bytes
            body = self.body_file.read(limit + 1)
            if len(body) > limit:
                raise ApiError(413, f"the JSON request body is larger than {limit} bytes "
                                    "(c.DassService.max_body_bytes): name fewer paths")
            await self.classify_dataset(body)
        elif content_type.startswith("multipart/form-data"):
            self._spool = Spool(self.limits.spool_dir)
            try:
                await self.classify_upload(content_type, self._spool)
            finally:
                self._spool.close()
        else:
            raise ApiError(415, "send images as multipart/form-data (field 'files', optional field "
                                "'proposal'), or JSON {\"dataset\": \"<proposal>/<name>\", \"paths\": [...]}")

    # -- uploads ---------------------------------------------------------------------------------

    #: the settings behind the upload limits, named in the refusals
    LIMIT_SETTINGS = {
        "files": "c.SemClassifyService.max_files",
        "member": "c.SemClassifyService.max_file_bytes",
        "ratio": "c.SemClassifyService.max_zip_ratio",
        "total": "c.SemClassifyService.max_request_bytes",
    }

    def parse_upload(self, content_type: str, spool: Spool) -> tuple[dict[str, list[str]], list[SpooledFile]]:
        """The form fields and the files of the multipart body (the files into ``spool``)."""
        fields, files = parse_multipart(content_type, self.body_file, spool, max_files=self.sem.max_files,
                                        settings=self.LIMIT_SETTINGS)
        self._close_body()  # its files are in the spool now
        unknown = sorted({f.field for f in files} - {"files"})
        if unknown:
            raise ApiError(400, f"unknown file field(s) {', '.join(unknown)}; send the images as 'files'")
        return fields, files

    def expand(self, spool: Spool, uploads: list[SpooledFile]) -> list[FileItem]:
        """One item per image: uploaded files, and the members of ``.zip`` archives (taken out
        into the spool, their sizes and ratios checked while they are read)."""
        items: list[FileItem] = []
        limit = self.sem.max_file_bytes
        expanded = 0  # bytes taken out of zip archives: a small archive may hold a lot

        def skip(m: Any) -> bool:
            return m.filename.startswith("__MACOSX/") or m.filename.rsplit("/", 1)[-1].startswith(".")

        for f in uploads:
            name = f.name or "unnamed"
            if not (name.lower().endswith(".zip") or spool.read(f, 4) == _ZIP_MAGIC):
                if f.size > limit:
                    items.append(FileItem(file=name, reason=f"file too large: {f.size} bytes, the limit is {limit} "
                                                            "(c.SemClassifyService.max_file_bytes)"))
                else:
                    items.append(FileItem(file=name, spooled=f))
                continue
            # an archive may be as large as the request, not only as one image
            members, expanded = expand_zip(spool, f, max_member_bytes=limit, max_ratio=self.sem.max_zip_ratio,
                                           max_total=self.sem.max_request_bytes, expanded=expanded, skip=skip,
                                           settings=self.LIMIT_SETTINGS)
            items.extend(FileItem(file=m.name, spooled=m.file, reason=m.reason) for m in members)
            if len(items) > self.sem.max_files:
                break
        if len(items) > self.sem.max_files:
            raise ApiError(413, f"too many files: at most {self.sem.max_files} images per request, zip "
                                "members included (c.SemClassifyService.max_files)")
        return items

    def choose_proposal(self, given: str) -> str:
        identity = self.identity
        known = {p["id"] for p in self.catalog.proposals(identity)}
        if given:
            if not NAME_RE.match(given) or not is_member(identity, given) or (
                identity.admin and given not in identity.groups and given not in known
            ):
                # the same answer whether it does not exist or is not theirs
                raise ApiError(404, f"proposal {given} not found among your proposals")
            return given
        mine = sorted(g for g in identity.groups if g in known)
        if len(mine) == 1:
            return mine[0]
        if not mine:
            raise ApiError(400, "you are a member of no proposal, so the images cannot be stored; "
                                "name one with the field 'proposal'")
        raise ApiError(400, f"you are a member of several proposals ({', '.join(mine)}); choose one with "
                            "the field 'proposal'")

    async def classify_upload(self, content_type: str, spool: Spool) -> None:
        # parsing and unzipping read and write hundreds of megabytes: not on the event loop; an
        # UploadRefused (a DassError) answers its 400 or 413 through write_error
        arguments, uploads = await asyncio.to_thread(self.parse_upload, content_type, spool)
        unknown = sorted(set(arguments) - {"proposal"})
        if unknown:
            raise ApiError(400, f"unknown form field(s) {', '.join(unknown)}; send 'files' and optionally "
                                "'proposal'")
        if not uploads:
            raise ApiError(400, "no images in the request: send them as the multipart field 'files'")
        given = arguments.get("proposal", [""])[-1].strip()
        proposal = self.choose_proposal(given)
        record = self.audit("classify.upload", proposal=proposal)
        items = await asyncio.to_thread(self.expand, spool, uploads)
        if not items:
            raise ApiError(400, "no images in the request: the zip archive(s) hold no files; send images, or "
                                "archives of images")
        classifier = await self.loaded_classifier()  # 503 before anything is stored

        def load(item: FileItem) -> None:  # on a worker: one file in memory at a time per worker
            if item.spooled is not None and not item.reason:
                item.data = spool.read(item.spooled)

        prepared = asyncio.Event()
        inference = asyncio.ensure_future(self.sem.classify(classifier, items, read=load, prepared=prepared))
        waiting = asyncio.ensure_future(prepared.wait())
        await asyncio.wait({inference, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if inference.done():
            inference.result()  # raises what failed
        # every file is decoded: store the good ones while the last batches run
        good = [item for item in items if item.prepared]
        dataset = None
        try:
            if good:
                dataset = await asyncio.to_thread(self.store, proposal, good, spool)
                record.dataset, record.bytes = dataset, sum(item.spooled.size for item in good)
        except BaseException:
            await asyncio.wait({inference})
            raise
        predictions = await inference
        await self.finish_classification(classifier, items, predictions, dataset, proposal)

    def store(self, proposal: str, good: list[FileItem], spool: Spool) -> str:
        """Store the uploaded files (read from the spool one at a time) as a new dataset; its id."""
        storage = self.settings["storage"]
        try:
            upload = store_upload(storage, self.catalog, proposal, self.identity.name,
                                  [(item.file, functools.partial(spool.read, item.spooled)) for item in good],
                                  instrument_metadata=[item.metadata for item in good])
        except LabelError as e:
            raise ApiError(e.status, e.message) from None
        except DassDataError as e:
            self.log.error("user %s: storing %d uploaded SEM images in %s failed: %s",
                           self.identity.name, len(good), proposal, e)
            raise ApiError(503, f"the images cannot be stored in the repository right now ({e}); "
                                "nothing was classified; try again later") from None
        for item, path in zip(good, upload.paths):
            item.path = path
        return upload.dataset

    # -- files of a dataset ------------------------------------------------------------------------

    async def classify_dataset(self, body: bytes) -> None:
        doc = self.parse_json(body)
        if not isinstance(doc, dict) or not isinstance(doc.get("dataset"), str):
            raise ApiError(400, "send {\"dataset\": \"<proposal>/<name>\", \"paths\": [\"image.tif\", ...]} "
                                "(paths optional: every image of the dataset)")
        unknown = sorted(set(doc) - {"dataset", "paths"})
        if unknown:
            raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; use dataset and paths")
        dataset_id = doc["dataset"]
        self.audit("classify.read", dataset=dataset_id)
        paths = doc.get("paths")
        if paths is not None and (not isinstance(paths, list) or not all(isinstance(p, str) for p in paths)):
            raise ApiError(400, "paths must be a list of file paths inside the dataset")
        record = self.visible_dataset(dataset_id)
        storage = self.settings["storage"]
        folder = storage.dataset_path(record.proposal, record.name)
        try:
            listing = await asyncio.to_thread(storage.list_files, folder)
        except DassDataError as e:
            raise ApiError(503, f"the files of dataset {dataset_id} cannot be listed right now: {e}") from None
        if paths is None:
            paths = sorted(p for p in listing if p != METADATA_FILE and not p.endswith(SIDECAR_SUFFIX)
                           and not is_preview_path(p) and p != NEXUS_EXPORT)
        if len(paths) > self.sem.max_files:
            raise ApiError(413, f"too many files: at most {self.sem.max_files} images per request "
                                "(c.SemClassifyService.max_files)")
        if not paths:
            raise ApiError(400, f"dataset {dataset_id} has no files to classify")
        classifier = await self.loaded_classifier()
        items = []
        for p in paths:
            item = FileItem(file=p, path=p)
            if p not in listing or p == METADATA_FILE:
                item.reason = f"no file {p!r} in dataset {dataset_id}"
            elif listing[p] > self.sem.max_file_bytes:
                item.reason = (f"file too large: {listing[p]} bytes, the limit is {self.sem.max_file_bytes} "
                               "(c.SemClassifyService.max_file_bytes)")
            items.append(item)

        def read(item: FileItem) -> None:
            if item.reason:
                return
            try:
                item.data = storage.read_bytes(f"{folder}/{item.path}", self.sem.max_file_bytes)
            except DassDataError as e:
                item.reason = f"cannot be read: {e}"

        def read_one(item: FileItem) -> None:  # one file in memory at a time
            read(item)

        predictions = await self.sem.classify(classifier, items, read=read_one)
        await self.finish_classification(classifier, items, predictions, dataset_id, record.proposal)

    # -- both ------------------------------------------------------------------------------------

    async def finish_classification(self, classifier: Any, items: list[FileItem], predictions: dict[int, Any],
                                    dataset: str | None, proposal: str) -> None:
        pairs = [(item, predictions[i]) for i, item in enumerate(items)
                 if i in predictions and item.path is not None]
        good = [item for item, _ in pairs]
        predictions = [p for _, p in pairs]
        info = classifier.info
        model = self.sem.model_json(classifier, self.base_url)
        records: list[dict[str, Any]] = []
        if good:
            records = await asyncio.to_thread(  # a DassDataError answers 503 (BaseHandler.write_error)
                record_classifications, self.catalog, self.identity.name, dataset,
                [{"path": item.path, "file": item.file, "category": p.category,
                  "certainty": p.certainty, "scores": p.scores} for item, p in zip(good, predictions)],
                model=info.name, architecture=info.architecture,
            )
        by_item = {id(item): (p, r) for item, p, r in zip(good, predictions, records)}
        names = dict(zip(info.classes, info.display_names))
        reps = {c["id"]: c["representative"] for c in model["classes"]}
        api = url_path_join(self.base_url, "api/classify")
        results = []
        for item in items:
            if id(item) not in by_item:
                results.append({"file": item.file, "status": "error",
                                "reason": item.reason or "not classified", "path": item.path})
                continue
            preview = (f"{api}/preview?" + urlencode({"dataset": dataset, "path": item.path})
                       if dataset and item.path else None)
            p, r = by_item[id(item)]
            ranked = sorted(p.scores.items(), key=lambda kv: -kv[1])
            results.append({
                "id": r["id"],
                "file": item.file,
                "status": "ok",
                "dataset": dataset,
                "path": item.path,
                "category": p.category,
                "display_name": names.get(p.category, p.category),
                "certainty": p.certainty,
                "scores": dict(p.scores),
                "categories": [{"id": c, "display_name": names.get(c, c), "score": s, "representative": reps.get(c)}
                               for c, s in ranked],
                "confirm_url": f"{api}/{r['id']}/confirm",
                "preview": preview,
                "metadata": item.metadata or {},
                "notes": item.notes or [],
            })
        ok = sum(1 for r in results if r["status"] == "ok")
        self.log.info("user %s classified %d of %d SEM image(s) with %s (dataset %s)", self.identity.name, ok,
                      len(results), info.name, dataset)
        self.write_json({
            "model": model,
            "proposal": proposal,
            "dataset": dataset,
            "classified": ok,
            "failed": len(results) - ok,
            "results": results,
        })


class ModelHandler(SemBase):
    """``GET api/classify/model``: the model ``api/classify`` uses (503 when there is none)."""

    async def get(self) -> None:
        self.query_args(())
        classifier = await self.loaded_classifier()
        self.write_json(self.sem.model_json(classifier, self.base_url))


class RepresentativeHandler(SemBase):
    """``GET api/classify/categories/{category}/representative``: a PNG of the category."""

    async def get(self, category: str) -> None:
        self.query_args(())
        classifier = await self.loaded_classifier()
        if category not in classifier.info.classes:
            raise ApiError(404, f"unknown category {category!r}; the model knows: "
                                f"{', '.join(classifier.info.classes)}")
        png = classifier.representative(category)
        if not png:
            raise ApiError(404, f"the model {classifier.info.name} has no representative image of {category}")
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "private, max-age=300")
        self.finish(png)


class PreviewHandler(SemBase):
    """``GET api/classify/preview?dataset=<proposal>/<name>&path=<file>``: a PNG preview.

    Made from the image by the service (TIFF, 16-bit and palette images included, data bar
    outlined) on the first request and cached in the dataset under ``.dass-previews/``.
    """

    async def get(self) -> None:
        args = self.query_args(("dataset", "path"))
        dataset_id, path = args.get("dataset", ""), args.get("path", "")
        if not dataset_id or not path:
            raise ApiError(400, "give the image as ?dataset=<proposal>/<name>&path=<file in the dataset>")
        parts = path.split("/")
        if path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts) or is_preview_path(path):
            raise ApiError(400, f"invalid path {path!r}: give a file path inside the dataset, like 'run1/image.tif'")
        record = self.visible_dataset(dataset_id)
        png = await asyncio.to_thread(self.preview, record, path)
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "private, max-age=300")
        self.finish(png)

    def preview(self, record: Any, path: str) -> bytes:
        from ..data.errors import StorageError
        from .io import SemReadError, read_sem
        from .preview import preview_png

        storage = self.settings["storage"]
        folder = storage.dataset_path(record.proposal, record.name)
        cached = f"{folder}/{preview_path(path)}"
        try:
            return storage.read_bytes(cached, 16 * MiB)
        except StorageError:
            pass  # not made yet
        try:
            data = storage.read_bytes(f"{folder}/{path}", self.sem.max_file_bytes)
        except StorageError as e:
            if "larger than" in str(e):
                raise ApiError(413, f"{path} is larger than {self.sem.max_file_bytes} bytes "
                                    "(c.SemClassifyService.max_file_bytes): no preview") from None
            raise ApiError(404, f"no file {path!r} in dataset {record.proposal}/{record.name}") from None
        try:
            png = preview_png(read_sem(data, max_pixels=self.sem.max_pixels), max_size=self.sem.preview_size)
        except SemReadError as e:
            raise ApiError(422, f"no preview of {path}: {str(e).replace('<bytes>', path)}") from None
        item = FileItem(file=path, path=path, preview=png)
        self.sem.store_previews(folder, [item])
        return png


class ClassificationHandler(SemBase):
    """``GET api/classify/{id}``: one classification of a dataset the caller may see."""

    async def get(self, classification_id: str) -> None:
        self.query_args(())
        record = await asyncio.to_thread(visible_classification, self.catalog, self.identity, classification_id)
        self.write_json(record)


class ConfirmHandler(SemBase):
    """``POST api/classify/{id}/confirm``: store the confirmed or changed category."""

    audit_action = "label.confirm"

    async def post(self, classification_id: str) -> None:
        self.query_args(())
        if len(self.request.body) > 64 * 1024:
            raise ApiError(413, "the confirm body is larger than 64 KiB; send {\"category\": \"<id>\"}")
        doc = self.parse_json(self.request.body, b"{}")
        if not isinstance(doc, dict) or set(doc) - {"category"}:
            raise ApiError(400, "send {} to accept the suggested category, or {\"category\": \"<id>\"} to "
                                "change it")
        category = doc.get("category")
        if "category" in doc and not isinstance(category, str):
            raise ApiError(422, f"category must be a category id (a string), not {json.dumps(category)[:80]}; "
                                "send {} to accept the suggested category")
        try:
            label = await asyncio.to_thread(
                confirm, self.catalog, self.settings["storage"], self.identity, classification_id, category
            )
        except LabelError as e:
            raise ApiError(e.status, e.message) from None
        except DassDataError as e:
            self.log.error("user %s: confirming %s failed: %s", self.identity.name, classification_id, e)
            raise ApiError(503, f"the label cannot be stored right now ({e}); try again later") from None
        self.audit(dataset=label.get("dataset"), path=label.get("path"))
        if self.sem.export_nexus_on_confirm:
            label["nexus"] = await asyncio.to_thread(self.export_nexus, label["dataset"])
        self.write_json(label)

    def export_nexus(self, dataset: str) -> dict[str, str]:
        from .nexus import NexusExportError, export_dataset

        try:
            return {"written": export_dataset(self.settings["storage"], self.catalog, dataset)}
        except (NexusExportError, DassDataError) as e:
            self.log.warning("user %s: NXem export of %s after a confirm: %s", self.identity.name, dataset, e)
            return {"error": str(e)}


class SemPage(PageHandler):
    """``GET sem``: upload SEM images, see their categories, confirm or change them."""

    def get(self) -> None:
        identity = self.identity
        known = {p["id"]: p for p in self.catalog.proposals(identity)}
        mine = sorted(g for g in identity.groups if g in known)
        if identity.admin:
            mine = sorted(set(mine) | set(known))
        sem: SemClassifyService = self.settings["sem_service"]
        self.render_page(
            "sem_classify.html",
            proposals=[{"id": p, "title": (known.get(p) or {}).get("title") or ""} for p in mine],
            max_files=sem.max_files,
            max_file_bytes=sem.max_file_bytes,
        )


#: The routes, relative to the service's ``base_url`` (``api/classify/model`` before ``{id}``).
default_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    ("api/classify", ClassifyHandler),
    ("api/classify/model", ModelHandler),
    (r"api/classify/categories/([A-Za-z0-9_.-]+)/representative", RepresentativeHandler),
    ("api/classify/preview", PreviewHandler),
    (r"api/classify/([0-9a-f]{32})", ClassificationHandler),
    (r"api/classify/([0-9a-f]{32})/confirm", ConfirmHandler),
    ("sem", SemPage),
]


class SemWeb(ServiceExtension):
    """The SEM stack's part of the dass service (``web: dass.sem.web:SemWeb`` in stacks.yaml):
    ``api/classify…``, the ``sem`` page and its header link, and the banner on every page that
    says which classifier is in use."""

    classes = [SemClassifyService]

    def __init__(self, service: Any) -> None:
        super().__init__(service)
        self.sem = SemClassifyService(parent=service, storage=service.storage, catalog=service.catalog)

    def handlers(self) -> list[tuple[str, type[web.RequestHandler]]]:
        return list(default_handlers)

    def nav_links(self) -> list[NavLink]:
        return [NavLink("sem", "SEM classification", "nav-sem")]

    def template_paths(self) -> list[str]:
        return [str(TEMPLATES)]

    def header_templates(self) -> list[str]:
        return ["sem_banner.html"]

    def template_vars(self, handler: web.RequestHandler) -> dict[str, Any]:
        return {"sem_model": self.sem.banner()}

    def settings(self) -> dict[str, Any]:
        return {"sem_service": self.sem}

    def start(self) -> None:
        self.sem.start()

    async def stop(self) -> None:
        self.sem.stop()
