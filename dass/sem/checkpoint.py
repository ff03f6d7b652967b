"""The SEM classifier checkpoint: one file, a plain dict saved with ``torch.save``.

Layout (format ``dass.sem.checkpoint``, version :data:`FORMAT_VERSION`)::

    {
      "format": "dass.sem.checkpoint",
      "version": 1,
      "info": {...},                # ModelInfo.to_json(): architecture, classes, input size,
                                    # normalization, training data, metrics, date, ...
      "state_dict": {...},          # the SemNet's tensors
      "representatives": {id: PNG bytes},
    }

Only tensors and JSON-like values are stored, so :func:`load_checkpoint` reads it
with ``torch.load(weights_only=True)``: loading a checkpoint never runs code.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from dass.sem.categories import CATEGORY_IDS, display_name

from ..errors import DassError

if TYPE_CHECKING:
    import torch

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "ModelInfo",
    "load_checkpoint",
    "read_checkpoint_info",
    "save_checkpoint",
]

FORMAT = "dass.sem.checkpoint"
FORMAT_VERSION = 1
#: Refuse to load files larger than this (bytes): no torchvision model here comes close.
MAX_CHECKPOINT_BYTES = 2 * 1024**3


class CheckpointError(DassError):
    """A file is not a usable dass SEM checkpoint; the message names the file and the problem."""


def _utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _dass_version() -> str:
    from dass import __version__

    return __version__


@dataclass
class ModelInfo:
    """What a checkpoint says about its model.

    Attributes
    ----------
    name : str
        Model name (the registry name once registered).
    architecture : str
        A key of :data:`dass.sem.models.ARCHITECTURES`.
    classes : list of str
        NFFA category ids in the order of the model's outputs.
    display_names : list of str
        Readable names, same order as `classes`.
    input_size : int
        Square input side; images are prepared with ``preprocess(image, input_size)``.
    mean, std : float
        Input normalization (applied inside the model).
    trained_on : dict
        ``url``, ``fingerprint``, ``n_images``, ``per_class`` counts, ``synthetic`` (bool).
    metrics : dict
        ``accuracy``, ``per_class`` precision/recall/f1/support, ``confusion_matrix``
        (rows: true class, columns: predicted, in `classes` order), ``n_val``.
    created : str
        UTC ISO 8601 time of creation.
    dass_version : str
    notes : str
    training : dict
        The training settings (epochs, lr, batch size, ...).
    """

    name: str
    architecture: str
    classes: list[str]
    input_size: int
    display_names: list[str] = field(default_factory=list)
    mean: float = 0.5
    std: float = 0.25
    trained_on: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=_utc_now)
    dass_version: str = field(default_factory=_dass_version)
    notes: str = ""
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.display_names:
            self.display_names = [display_name(c) if c in CATEGORY_IDS else c for c in self.classes]

    @property
    def synthetic(self) -> bool:
        """True when the model was trained on SYNTHETIC data."""
        return bool(self.trained_on.get("synthetic"))

    def describe_data(self) -> str:
        """One plain sentence: what the model was trained on and how it did on held-out images.

        Examples
        --------
        >>> ModelInfo("m", "resnet18", ["Tips", "Powder"], 64, trained_on={"url": "s3://sem", "n_train": 80,
        ...           "n_val": 20, "synthetic": False}, metrics={"accuracy": 0.9}).describe_data()
        'Trained on 80 images from s3://sem; 20 more held out for validation: accuracy 0.900.'
        """
        t = self.trained_on or {}
        n_train = t.get("n_train", t.get("n_images", "an unknown number of"))
        kind = "SYNTHETIC images (made by a program, not real micrographs)" if self.synthetic else "images"
        text = f"Trained on {n_train} {kind} from {t.get('url') or 'unknown data'}"
        if t.get("n_val") is not None:
            text += f"; {t['n_val']} more held out for validation"
            if isinstance((self.metrics or {}).get("accuracy"), (int, float)):
                text += f": accuracy {self.metrics['accuracy']:.3f}"
        return text + "."

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict of every field (plus ``synthetic`` for convenience)."""
        out = asdict(self)
        out["synthetic"] = self.synthetic
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], *, source: str = "<info>") -> "ModelInfo":
        """Rebuild from :meth:`to_json` output.

        Raises
        ------
        CheckpointError
            When a required field is missing or has the wrong type.
        """
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: model info must be a dict, got {type(data).__name__}")
        for key, kind in (("name", str), ("architecture", str), ("classes", list), ("input_size", int)):
            if not isinstance(data.get(key), kind):
                raise CheckpointError(f"{source}: model info field {key!r} is missing or not a {kind.__name__}")
        if len(data["classes"]) < 2 or not all(isinstance(c, str) for c in data["classes"]):
            raise CheckpointError(f"{source}: model info field 'classes' must list at least two category ids")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def _open_bytes(url_or_path: str | os.PathLike) -> tuple[bytes, str]:
    import fsspec

    name = os.fspath(url_or_path)
    try:
        with fsspec.open(name, "rb") as fh:
            size = getattr(fh, "size", None)
            if size is not None and size > MAX_CHECKPOINT_BYTES:
                raise CheckpointError(f"{name}: {size} bytes is too large for a checkpoint")
            data = fh.read()
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"{name}: checkpoint file not found") from None
    except IsADirectoryError:
        raise CheckpointError(f"{name}: is a directory, not a checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"{name}: cannot read the checkpoint: {exc}") from exc
    return data, name


def _read(url_or_path: str | os.PathLike | bytes) -> tuple[dict[str, Any], str]:
    """Load and validate the checkpoint dict (tensors on CPU)."""
    import pickle

    import torch

    if isinstance(url_or_path, (bytes, bytearray)):
        data, name = bytes(url_or_path), "<bytes>"
    else:
        data, name = _open_bytes(url_or_path)
    if not data:
        raise CheckpointError(f"{name}: empty file, not a checkpoint")
    if not data.startswith((b"PK\x03\x04", b"\x80")):  # torch's zip format, or a legacy pickle
        raise CheckpointError(f"{name}: not a readable checkpoint, corrupt or not a torch file")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise CheckpointError(f"{name}: not a readable checkpoint, corrupt or truncated ({str(exc)[:200]})") from None
        raise CheckpointError(
            f"{name}: not a dass checkpoint (it holds Python objects other than tensors and plain "
            "values, which dass never unpickles)"
        ) from None
    except Exception as exc:  # RuntimeError, EOFError, ... from a corrupt or truncated file
        raise CheckpointError(
            f"{name}: not a readable checkpoint, corrupt or truncated ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(
            f"{name}: not a dass SEM checkpoint (no 'format': {FORMAT!r} entry); "
            "create checkpoints with dass.sem.train or dass.sem.checkpoint.save_checkpoint"
        )
    if obj.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{name}: checkpoint format version {obj.get('version')!r} is not supported "
            f"(this dass reads version {FORMAT_VERSION}); retrain or convert the model"
        )
    if not isinstance(obj.get("state_dict"), dict):
        raise CheckpointError(f"{name}: the checkpoint has no 'state_dict'")
    reps = obj.get("representatives") or {}
    if not isinstance(reps, dict) or not all(isinstance(v, bytes) for v in reps.values()):
        raise CheckpointError(f"{name}: 'representatives' must map category ids to PNG bytes")
    obj["representatives"] = reps
    return obj, name


def save_checkpoint(
    url_or_path: str | os.PathLike,
    model: "torch.nn.Module",
    info: ModelInfo,
    *,
    representatives: dict[str, bytes] | None = None,
) -> str:
    """Write a checkpoint file (local path or fsspec URL) and return its name.

    Parameters
    ----------
    url_or_path : str or os.PathLike
        Where to write; parent folders are created.
    model : torch.nn.Module
        A :class:`~dass.sem.models.SemNet` built for ``info.architecture`` and
        ``len(info.classes)`` classes.
    info : ModelInfo
    representatives : dict, optional
        Category id -> small PNG bytes, one representative image per class.

    Returns
    -------
    str
        `url_or_path` as a string.

    Raises
    ------
    CheckpointError
        When `info` and `model` disagree or the file cannot be written.
    """
    import fsspec
    import torch

    name = os.fspath(url_or_path)
    if not isinstance(info, ModelInfo):
        raise CheckpointError(f"{name}: info must be a ModelInfo, got {type(info).__name__}")
    if getattr(model, "architecture", info.architecture) != info.architecture:
        raise CheckpointError(
            f"{name}: the model is a {model.architecture} but info says {info.architecture}"
        )
    reps = dict(representatives or {})
    for key, value in reps.items():
        if key not in info.classes or not isinstance(value, (bytes, bytearray)):
            raise CheckpointError(f"{name}: representative {key!r} must be PNG bytes of one of the model's classes")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    obj = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "info": info.to_json(),
        "state_dict": state,
        "representatives": {k: bytes(v) for k, v in reps.items()},
    }
    buf = io.BytesIO()
    torch.save(obj, buf)
    try:
        fs, path = fsspec.core.url_to_fs(name)
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent:
            fs.makedirs(parent, exist_ok=True)
        fs.pipe_file(path, buf.getvalue())
    except OSError as exc:
        raise CheckpointError(f"{name}: cannot write the checkpoint: {exc}") from exc
    return name


def read_checkpoint_info(url_or_path: str | os.PathLike | bytes) -> ModelInfo:
    """Read only the :class:`ModelInfo` of a checkpoint (no model is built)."""
    obj, name = _read(url_or_path)
    return ModelInfo.from_json(obj.get("info"), source=name)


def load_checkpoint(
    url_or_path: str | os.PathLike | bytes, *, device: str = "cpu"
) -> "tuple[torch.nn.Module, ModelInfo, dict[str, bytes]]":
    """Load a checkpoint: the model (in eval mode, on `device`), its info and representatives.

    Parameters
    ----------
    url_or_path : str, os.PathLike or bytes
        Local path, fsspec URL, or the file's bytes.
    device : str, optional
        ``"cpu"`` (default), ``"cuda"``, or ``"auto"``.

    Raises
    ------
    CheckpointError
        Missing, empty, corrupt or truncated file; not a dass checkpoint; unsupported format
        version; info and weights that do not fit together.
    """
    from dass.sem.models import ModelError, build_model, resolve_device

    obj, name = _read(url_or_path)
    info = ModelInfo.from_json(obj.get("info"), source=name)
    try:
        model = build_model(info.architecture, len(info.classes), mean=info.mean, std=info.std)
    except ModelError as exc:
        raise CheckpointError(f"{name}: {exc}") from None
    try:
        model.load_state_dict(obj["state_dict"], strict=True)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"{name}: the weights do not fit a {info.architecture} with {len(info.classes)} classes "
            f"({str(exc).splitlines()[0][:200]})"
        ) from None
    try:
        device = resolve_device(device)
    except ModelError as exc:
        raise CheckpointError(f"{name}: {exc}") from None
    model.to(device).eval()
    return model, info, dict(obj["representatives"])
