"""Torchvision backbones for SEM classification, selectable by name.

Every model built here is a :class:`SemNet`: it takes a batch of *grayscale*
images ``(N, 1, H, W)`` in [0, 1] -- exactly what :func:`dass.sem.databar.preprocess`
returns, stacked -- normalizes them with the model's own ``mean``/``std``
buffers and repeats the single channel three times for the torchvision
backbone. Because normalization and the 1 -> 3 channel step live inside the
model, training and inference cannot disagree about them.

Examples
--------
>>> from dass.sem.models import ARCHITECTURES, default_input_size
>>> sorted(ARCHITECTURES)[:3]
['efficientnet_b0', 'inception_v3', 'mobilenet_v3_large']
>>> default_input_size("inception_v3")
299
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import DassError

if TYPE_CHECKING:  # torch is imported inside the functions: `import dass.sem` stays light
    import torch

log = logging.getLogger(__name__)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "IMAGENET_GRAY_MEAN",
    "IMAGENET_GRAY_STD",
    "ModelError",
    "build_model",
    "default_input_size",
    "load_weights",
    "pretrained_weights_path",
    "read_weights",
    "resolve_device",
]

#: ImageNet channel statistics averaged over R, G, B: the normalization for
#: grayscale input to an ImageNet-pretrained backbone.
IMAGENET_GRAY_MEAN = 0.449
IMAGENET_GRAY_STD = 0.226


class ModelError(DassError, ValueError, status=422):
    """An architecture name, weights file or device is unusable; the message says what to fix."""


@dataclass(frozen=True)
class Architecture:
    """A torchvision backbone usable for SEM classification.

    Attributes
    ----------
    name : str
        Torchvision model name (``torchvision.models.get_model`` name).
    input_size : int
        Default square input side in pixels.
    min_input_size : int
        Smallest input side the network accepts.
    kwargs : dict
        Extra keyword arguments for the torchvision constructor.
    """

    name: str
    input_size: int = 224
    min_input_size: int = 32
    kwargs: dict[str, Any] = field(default_factory=dict)


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("resnet18"),
        Architecture("resnet50"),
        Architecture("mobilenet_v3_small"),
        Architecture("mobilenet_v3_large"),
        Architecture("efficientnet_b0"),
        # no auxiliary head: one output in training and inference; inputs are
        # normalized by SemNet, not by torchvision's transform_input
        Architecture("inception_v3", 299, 75, {"aux_logits": False, "transform_input": False, "init_weights": False}),
    )
}


def _architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise ModelError(
            f"unknown architecture {name!r}; use one of: {', '.join(sorted(ARCHITECTURES))}"
        ) from None


def default_input_size(architecture: str) -> int:
    """Default square input size of an architecture (299 for inception_v3, else 224).

    Raises
    ------
    ModelError
        If the architecture is unknown.

    Examples
    --------
    >>> default_input_size("resnet18")
    224
    """
    return _architecture(architecture).input_size


def min_input_size(architecture: str) -> int:
    """Smallest input side the architecture accepts (75 for inception_v3, else 32)."""
    return _architecture(architecture).min_input_size


def resolve_device(device: str | None = "auto") -> str:
    """Turn ``"auto"`` into ``"cuda"`` when a GPU is usable, else ``"cpu"``; check others.

    Raises
    ------
    ModelError
        If a CUDA device is requested but none is available, or the name is invalid.
    """
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelError(f"invalid device {device!r}: {exc}; use 'auto', 'cpu' or 'cuda[:N]'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but no CUDA GPU is available; use 'auto' or 'cpu'")
    return str(dev)


def _semnet_class():
    import torch
    from torch import nn

    class SemNet(nn.Module):
        """Grayscale wrapper: normalize, repeat to 3 channels, run the backbone."""

        def __init__(self, backbone: nn.Module, architecture: str, mean: float, std: float) -> None:
            super().__init__()
            self.backbone = backbone
            self.architecture = architecture
            self.register_buffer("mean", torch.tensor(float(mean)))
            self.register_buffer("std", torch.tensor(float(std)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, H, W) or (N, H, W), in [0, 1]
            if x.dim() == 3:
                x = x.unsqueeze(1)
            if x.dim() != 4 or x.shape[1] != 1:
                raise ValueError(f"SemNet expects grayscale batches (N, 1, H, W), got shape {tuple(x.shape)}")
            x = (x - self.mean) / self.std
            return self.backbone(x.expand(-1, 3, -1, -1))

    return SemNet


_SEMNET = None


def semnet_class():
    """The :class:`SemNet` ``nn.Module`` class (created on first use, so torch loads lazily)."""
    global _SEMNET
    if _SEMNET is None:
        _SEMNET = _semnet_class()
    return _SEMNET


def _read_state_dict(weights: str | os.PathLike) -> dict[str, Any]:
    """Read a state dict from a local file or fsspec URL (``torch.load`` with weights_only)."""
    return read_weights(weights)[0]


def read_weights(weights: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """Read an operator-supplied state dict and the sha256 of its file.

    Parameters
    ----------
    weights : str or os.PathLike
        Local path or fsspec URL of a ``torch.save``-d state dict.

    Returns
    -------
    (dict, str)
        The state dict (tensors on CPU) and ``"sha256:<hex>"`` of the file's bytes.

    Raises
    ------
    ModelError
        Missing or unreadable file, or not a state dict.
    """
    import hashlib
    import io

    import fsspec
    import torch

    name = os.fspath(weights)
    try:
        with fsspec.open(name, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ModelError(f"weights file {name} not found; pass a path or URL of a saved state_dict") from None
    except OSError as exc:
        raise ModelError(f"cannot read weights file {name}: {exc}") from exc
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise ModelError(
            f"weights file {name} is not a torch state_dict ({type(exc).__name__}: {str(exc)[:200]}); "
            "save one with torch.save(model.state_dict(), path)"
        ) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(
            f"weights file {name} does not hold a state_dict (a dict of tensors); "
            "save one with torch.save(model.state_dict(), path)"
        )
    return obj, "sha256:" + hashlib.sha256(data).hexdigest()


def load_weights(backbone: "torch.nn.Module", weights: str | os.PathLike | dict, *, source: str = "") -> list[str]:
    """Load operator-supplied weights into a torchvision backbone, skipping the classifier head.

    Keys may be plain torchvision keys (``conv1.weight``) or carry a ``backbone.``
    / ``module.`` prefix (a :class:`SemNet` or DataParallel state dict). Tensors
    whose shape differs from the model's (the 1000-class ImageNet head) are skipped.

    Parameters
    ----------
    backbone : torch.nn.Module
        The torchvision model to fill (modified in place).
    weights : str, os.PathLike or dict
        Path / fsspec URL of a ``torch.save``-d state dict, or the state dict.
    source : str, optional
        Name used in messages.

    Returns
    -------
    list of str
        Names of the model's parameters left at their initial values.

    Raises
    ------
    ModelError
        If the file cannot be read, is not a state dict, or matches too little of the model
        (less than half of its tensors) -- usually weights of another architecture.
    """
    if not isinstance(weights, dict):
        source = source or os.fspath(weights)
        weights = _read_state_dict(weights)
    source = source or "<state_dict>"
    own = backbone.state_dict()
    usable: dict[str, Any] = {}
    for key, value in weights.items():
        for prefix in ("backbone.", "module.", "module.backbone."):
            if key.startswith(prefix) and key[len(prefix):] in own:
                key = key[len(prefix):]
        if key in own and tuple(own[key].shape) == tuple(value.shape):
            usable[key] = value
    if len(usable) < len(own) / 2:
        raise ModelError(
            f"weights {source} match only {len(usable)} of the model's {len(own)} tensors; "
            "they are probably for another architecture"
        )
    backbone.load_state_dict(usable, strict=False)
    missing = [k for k in own if k not in usable]
    log.info("loaded weights %s: %d tensors, %d left initialized (%s)", source, len(usable), len(missing),
             ", ".join(missing[:4]))
    return missing


def pretrained_weights_path(architecture: str) -> str:
    """Path of torchvision's ImageNet weights of `architecture` in the local torch cache.

    Raises
    ------
    ModelError
        Unknown architecture, or the file is not in the cache (dass never downloads it).
    """
    return _cached_pretrained(_architecture(architecture).name)


def _cached_pretrained(architecture: str) -> str:
    """Path of torchvision's default weights for ``architecture`` in the torch hub cache."""
    import torch
    import torchvision

    try:
        url = torchvision.models.get_model_weights(architecture).DEFAULT.url
    except (ValueError, AttributeError) as exc:  # pragma: no cover - every listed arch has weights
        raise ModelError(f"torchvision has no pretrained weights for {architecture}: {exc}") from None
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    if not os.path.exists(path):
        raise ModelError(
            f"pretrained ImageNet weights for {architecture} are not in the torch cache ({path}) and "
            f"dass does not download them; copy {os.path.basename(url)} there, or pass weights=<file or URL>"
        )
    return path


def build_model(
    architecture: str,
    num_classes: int,
    *,
    weights: str | os.PathLike | dict | None = None,
    pretrained: bool = False,
    mean: float | None = None,
    std: float | None = None,
) -> "torch.nn.Module":
    """Build a :class:`SemNet` around a torchvision backbone.

    Parameters
    ----------
    architecture : str
        A key of :data:`ARCHITECTURES`.
    num_classes : int
        Number of output classes (10 for the NFFA categories).
    weights : str, os.PathLike or dict, optional
        Operator-supplied backbone weights (a ``torch.save``-d state dict; path or fsspec
        URL, or the state dict itself), loaded with the classifier head skipped. Nothing is
        downloaded.
    pretrained : bool, optional
        Use torchvision's ImageNet weights *if they are already in the torch hub cache*
        (no download); ignored when `weights` is given.
    mean, std : float, optional
        Input normalization; default: ImageNet gray statistics with weights, else 0.5 / 0.25.

    Returns
    -------
    torch.nn.Module
        A ``SemNet``: input ``(N, 1, H, W)`` floats in [0, 1], output ``(N, num_classes)`` logits.

    Raises
    ------
    ModelError
        Unknown architecture, bad `num_classes`, unusable weights.

    Examples
    --------
    >>> import torch
    >>> net = build_model("mobilenet_v3_small", 10).eval()
    >>> net(torch.rand(2, 1, 64, 64)).shape
    torch.Size([2, 10])
    """
    import torchvision

    arch = _architecture(architecture)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ModelError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    backbone = torchvision.models.get_model(arch.name, weights=None, num_classes=num_classes, **arch.kwargs)
    if weights is None and pretrained:
        weights = _cached_pretrained(arch.name)
    if weights is not None:
        load_weights(backbone, weights)
    default_mean, default_std = (IMAGENET_GRAY_MEAN, IMAGENET_GRAY_STD) if weights is not None else (0.5, 0.25)
    mean = default_mean if mean is None else float(mean)
    std = default_std if std is None else float(std)
    if not std > 0:
        raise ModelError(f"std must be positive, got {std}")
    return semnet_class()(backbone, arch.name, mean, std)
