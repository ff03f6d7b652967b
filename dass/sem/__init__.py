"""SEM image science: reading vendor files, data-bar handling, categories.

Torch-free building blocks shared by training and inference:

- :mod:`dass.sem.categories` -- the ten NFFA-Europe SEM categories.
- :mod:`dass.sem.io` -- :func:`read_sem`, vendor metadata normalization.
- :mod:`dass.sem.databar` -- detect and crop the info strip, :func:`preprocess`.
- :mod:`dass.sem.synthetic` -- a *synthetic* SEM-like generator for tests and demos.

Classification (these import torch, so they are not imported here):

- :mod:`dass.sem.models` -- torchvision backbones by name (:func:`~dass.sem.models.build_model`).
- :mod:`dass.sem.inference` -- the fastest inference form of a model here (:func:`~dass.sem.inference.accelerate`).
- :mod:`dass.sem.checkpoint` -- the checkpoint file and :class:`~dass.sem.checkpoint.ModelInfo`.
- :mod:`dass.sem.train` -- :func:`~dass.sem.train.train` on an ImageFolder dataset at any URL.
- :mod:`dass.sem.classify` -- :class:`~dass.sem.classify.Classifier`, batch inference.
- :mod:`dass.sem.registry` -- :class:`~dass.sem.registry.ModelRegistry` under ``models/`` in storage.
- :mod:`dass.sem.demo` -- the demo model trained on synthetic images, cached per machine.
- :mod:`dass.sem.cli` -- ``dass sem train|models|classify`` (registered through ``stacks.yaml``).
- :mod:`dass.sem.web` -- the stack's part of the dass service: ``api/classify…`` and the ``sem`` page.
"""

from dass.sem.categories import CATEGORIES, Category, category, display_name
from dass.sem.databar import crop_data_bar, detect_data_bar, preprocess
from dass.sem.io import SemImage, SemReadError, read_sem

__all__ = [
    "CATEGORIES",
    "Category",
    "SemImage",
    "SemReadError",
    "category",
    "crop_data_bar",
    "detect_data_bar",
    "display_name",
    "preprocess",
    "read_sem",
]
