"""The registry of analysis stacks and hardware sizes.

Stacks and sizes are data: the built-in ones live in ``stacks.yaml`` beside this module and a
deployer merges changes over them with ``c.StackRegistry.stacks`` and ``c.StackRegistry.sizes``.
"""

from __future__ import annotations

import copy
import importlib
import sys
from dataclasses import asdict, dataclass, field
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from traitlets import Dict, Unicode, default
from traitlets.config import LoggingConfigurable

from ..data.access import Identity
from ..errors import DassError

BUILTIN = Path(__file__).with_name("stacks.yaml")
#: the stacks' notebooks shipped inside the package (``dass/notebooks/<stack>/...``)
PACKAGED_NOTEBOOKS = files("dass") / "notebooks"


class StackConfigError(DassError, ValueError):
    """A stack or size definition is invalid (a deployer's configuration error)."""


@dataclass(frozen=True)
class Size:
    """A hardware size a session or job runs with."""

    name: str
    display_name: str
    cpu: float
    mem_gib: float
    groups: tuple[str, ...] = ()
    #: GPUs of the size (0: none); back ends that schedule GPUs (Kubernetes) request them
    gpus: int = 0

    @property
    def mem_bytes(self) -> int:
        return int(self.mem_gib * 1024**3)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["groups"] = list(self.groups)
        return d


@dataclass(frozen=True)
class Stack:
    """An analysis stack: what a session or job runs, and where."""

    name: str
    display_name: str
    description: str
    landing_notebook: str
    default_size: str
    allowed_sizes: tuple[str, ...]
    technique: str = ""
    extra: str = ""
    image: str = ""
    environment: str = ""
    file_types: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    notebooks: dict[str, str] = field(default_factory=dict)
    url: str = ""
    #: ``module:function`` that adds the stack's ``dass`` sub-commands (see :mod:`dass.cli`)
    cli: str = ""
    #: ``module:Class``, the stack's part of the dass service (a
    #: :class:`dass.service.extensions.ServiceExtension`: routes, pages, links)
    web: str = ""
    #: ``module:attribute``, a dict {parameter name: check(value)} run on the stack's job
    #: parameters at submission; a check raises a DassError/ValueError naming what to fix
    checks: str = ""

    def allows(self, identity: Identity) -> bool:
        """Whether this identity may use the stack (empty ``groups``: everyone)."""
        return identity.admin or not self.groups or bool(identity.groups & set(self.groups))

    @property
    def python(self) -> str:
        """The Python executable of the stack's environment."""
        if self.environment:
            return str(Path(self.environment) / "bin" / "python")
        return sys.executable

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("allowed_sizes", "file_types", "groups"):
            d[key] = list(d[key])
        for key in PLUGIN_KINDS:  # how dass wires the stack in, not what a user chooses
            d.pop(key)
        return d


#: The plug-in fields of a stack: what it adds to the command line and to the dass service.
PLUGIN_KINDS = ("cli", "web", "checks")


_STACK_FIELDS = set(Stack.__dataclass_fields__)
_SIZE_FIELDS = set(Size.__dataclass_fields__)


def _merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for name, spec in (override or {}).items():
        if spec is None:
            merged.pop(name, None)  # a deployer removes a built-in with None
        elif isinstance(spec, dict):
            merged[name] = {**merged.get(name, {}), **spec}
        else:
            raise StackConfigError(f"{name!r}: expected a dict of fields or None, got {spec!r}")
    return merged


class StackRegistry(LoggingConfigurable):
    """All analysis stacks and sizes of this deployment."""

    stacks = Dict(
        help="""
        Analysis stacks, merged over the built-in ones (sem, kmap, stm) field by field.

        Each key is a stack name; each value a dict with any of: ``display_name``,
        ``description``, ``landing_notebook`` (path below ``notebooks_dir``), ``default_size``,
        ``allowed_sizes`` (list of size names), ``technique``, ``file_types`` (list of
        suffixes), ``groups`` (hub groups allowed to use it; empty: everyone), ``environment``
        (prefix of the Python environment the stack runs in on one machine; empty: the
        platform's own), ``image`` (container image on Kubernetes), ``extra`` (the `dass`
        extra that installs its libraries), ``url`` (a page describing the stack, recorded in
        job provenance; empty: a ``urn:dass:stack:<name>`` identifier), ``cli``
        (``module:function`` that adds the stack's ``dass`` sub-commands) and ``web``
        (``module:Class``, the stack's routes, pages and links in the dass service), ``checks``
        (``module:attribute``, a dict of job parameter name to a check run at submission). Set a
        built-in stack to ``None`` to remove it, with its sub-commands and pages.

        Example::

            c.StackRegistry.stacks = {"kmap": {"groups": ["beamline-id01"]}, "stm": None}
        """,
    ).tag(config=True)

    sizes = Dict(
        help="""
        Hardware sizes, merged over the built-in ones (small, medium, large).

        Each value: ``display_name``, ``cpu`` (cores), ``mem_gib`` (GiB), optionally
        ``groups`` (hub groups allowed to use it; empty: everyone) and ``gpus`` (GPUs a session
        or job of this size gets where the back end schedules them, e.g. Kubernetes with
        ``c.DassKubeSpawner.gpu_resource``; 0 by default). Example::

            c.StackRegistry.sizes = {"xl": {"display_name": "XL: 8 CPU, 32 GiB",
                                           "cpu": 8, "mem_gib": 32, "groups": ["staff"]}}
        """,
    ).tag(config=True)

    notebooks_dir = Unicode(
        help="""Folder holding the stacks' notebooks (`<stack>/welcome.ipynb`, ...).

        Default: the notebooks shipped inside the dass package (`dass/notebooks/`).""",
    ).tag(config=True)

    @default("notebooks_dir")
    def _default_notebooks_dir(self) -> str:
        return str(PACKAGED_NOTEBOOKS)

    @cached_property
    def _builtin(self) -> dict:
        return yaml.safe_load(BUILTIN.read_text())

    @cached_property
    def all_sizes(self) -> dict[str, Size]:
        sizes = {}
        for name, spec in _merge(self._builtin["sizes"], self.sizes).items():
            unknown = set(spec) - _SIZE_FIELDS
            if unknown:
                raise StackConfigError(f"size {name!r}: unknown fields {sorted(unknown)}")
            try:
                sizes[name] = Size(
                    name=name,
                    display_name=str(spec.get("display_name", name)),
                    cpu=float(spec["cpu"]),
                    mem_gib=float(spec["mem_gib"]),
                    groups=tuple(spec.get("groups", ())),
                    gpus=int(spec.get("gpus", 0)),
                )
            except (KeyError, TypeError, ValueError) as e:
                raise StackConfigError(f"size {name!r}: needs numeric cpu and mem_gib ({e})") from e
        return sizes

    @cached_property
    def all_stacks(self) -> dict[str, Stack]:
        stacks = {}
        for name, spec in _merge(self._builtin["stacks"], self.stacks).items():
            unknown = set(spec) - _STACK_FIELDS
            if unknown:
                raise StackConfigError(f"stack {name!r}: unknown fields {sorted(unknown)}")
            spec = {**spec, "name": name}
            for key in ("allowed_sizes", "file_types", "groups"):
                spec[key] = tuple(spec.get(key, ()))
            spec.setdefault("display_name", name)
            spec.setdefault("description", "")
            try:
                stack = Stack(**spec)
            except TypeError as e:
                raise StackConfigError(f"stack {name!r}: {e}") from e
            missing = [s for s in (*stack.allowed_sizes, stack.default_size) if s not in self.all_sizes]
            if missing:
                raise StackConfigError(f"stack {name!r}: unknown sizes {missing}")
            if stack.default_size not in stack.allowed_sizes:
                raise StackConfigError(
                    f"stack {name!r}: default_size {stack.default_size!r} is not in allowed_sizes"
                )
            stacks[name] = stack
        return stacks

    def get(self, name: str) -> Stack | None:
        return self.all_stacks.get(name)

    def for_identity(self, identity: Identity) -> list[Stack]:
        """The stacks this identity may use, in declaration order."""
        return [s for s in self.all_stacks.values() if s.allows(identity)]

    def sizes_for(self, stack: Stack, identity: Identity) -> list[Size]:
        """The sizes of a stack this identity may use."""
        out = []
        for name in stack.allowed_sizes:
            size = self.all_sizes[name]
            if identity.admin or not size.groups or identity.groups & set(size.groups):
                out.append(size)
        return out

    def landing_notebook_path(self, stack: Stack) -> Path:
        return Path(self.notebooks_dir) / stack.landing_notebook

    def parameter_checks(self, stack: str | None) -> dict[str, Any]:
        """The checks a stack runs on its job notebooks' parameters at submission, by name."""
        spec = getattr(self.get(stack), "checks", "") if stack else ""
        if not spec:
            return {}
        checks = load_plugin(spec, where=f"stack {stack!r}: checks")
        if not isinstance(checks, dict) or not all(callable(c) for c in checks.values()):
            raise StackConfigError(f"stack {stack!r}: checks {spec!r} must name a dict of parameter name -> function")
        return checks

    def plugins(self, kind: str) -> list[tuple[str, Any]]:
        """The stacks' plug-ins of one kind (``cli`` or ``web``), imported now.

        Returns ``(spec, object)`` pairs in declaration order, each spec once even when
        several stacks name it. Only the modules named are imported, and only when asked
        (``dass --help`` imports the stacks' small CLI modules, never their libraries).

        Raises
        ------
        StackConfigError
            When a spec is not ``module:attribute`` or cannot be imported; the message names
            the stack, the field and the fix.
        """
        if kind not in PLUGIN_KINDS:
            raise ValueError(f"unknown plug-in kind {kind!r}; use one of {', '.join(PLUGIN_KINDS)}")
        loaded: dict[str, Any] = {}
        for stack in self.all_stacks.values():
            spec = getattr(stack, kind)
            if spec and spec not in loaded:
                loaded[spec] = load_plugin(spec, where=f"stack {stack.name!r}: {kind}")
        return list(loaded.items())


def load_plugin(spec: str, *, where: str = "plug-in") -> Any:
    """Import ``"package.module:attribute"`` and return the attribute.

    Examples
    --------
    >>> load_plugin("dass.stacks.registry:load_plugin") is load_plugin
    True
    >>> load_plugin("dass.stacks.registry")
    Traceback (most recent call last):
    ...
    dass.stacks.registry.StackConfigError: plug-in 'dass.stacks.registry': write it as 'package.module:attribute'
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise StackConfigError(f"{where} {spec!r}: write it as 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise StackConfigError(
            f"{where} {spec!r} cannot be imported ({e}); install the stack's extra "
            "(pip install 'dass[<stack>]') or fix c.StackRegistry.stacks"
        ) from e
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise StackConfigError(f"{where} {spec!r}: module {module_name} has no {attr!r}") from None
    return obj
