"""What an analysis stack adds to the dass service: routes, pages, links, settings.

The service knows no stack by name. A stack that has a part in it names that part in its
definition (``web: "dass.sem.web:SemWeb"`` in ``stacks.yaml``, or in
``c.StackRegistry.stacks`` for a stack of a deployer's own); at start the service imports it
through the stack registry (:meth:`dass.stacks.registry.StackRegistry.plugins`), makes one instance
and collects from it:

- ``handlers()``: routes relative to the service's ``base_url`` (API routes under ``api/``);
- ``nav_links()``: links shown in every page's header;
- ``template_paths()``: folders of the stack's page templates (the service's own come first);
- ``header_templates()`` and ``template_vars(handler)``: a fragment every page's header
  includes, and the values it needs (the SEM classifier banner);
- ``settings()``: entries of the tornado application settings its handlers read;
- ``classes``: its configurable classes (``dass config reference``, ``--help-all``);
- ``start()`` / ``stop()``: called when the service starts serving and when it stops.

A deployer who removes a stack (``c.StackRegistry.stacks = {"sem": None}``) removes its
pages and routes with it. The same registry gives the command line its stack sub-commands
(``cli:``, see :mod:`dass.cli`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from tornado import web

    from ..stacks.registry import StackRegistry

__all__ = ["NavLink", "ServiceExtension", "extension_classes", "load_extensions"]


@dataclass(frozen=True)
class NavLink:
    """A link in the header of every page: ``path`` is relative to the service's ``base_url``."""

    path: str
    label: str
    id: str


class ServiceExtension:
    """A stack's part of the dass service; subclasses override what they add.

    Parameters
    ----------
    service : dass.service.app.DassService
        The initialized service (its ``storage``, ``catalog``, ``stack_registry``,
        ``job_manager`` and configuration are ready); configurables take it as ``parent``.
    """

    #: The extension's configurable classes (documented in the config reference).
    classes: ClassVar[list[type]] = []

    def __init__(self, service: Any) -> None:
        self.service = service

    def handlers(self) -> list[tuple[str, type[web.RequestHandler]]]:
        return []

    def nav_links(self) -> list[NavLink]:
        return []

    def template_paths(self) -> list[str]:
        return []

    def header_templates(self) -> list[str]:
        return []

    def template_vars(self, handler: web.RequestHandler) -> dict[str, Any]:
        return {}

    def settings(self) -> dict[str, Any]:
        return {}

    def start(self) -> None:
        """Called when the service starts serving."""

    async def stop(self) -> None:
        """Called when the service stops."""


def extension_classes(registry: StackRegistry) -> list[type[ServiceExtension]]:
    """The stacks' extension classes, in declaration order (importing them, not starting them)."""
    out = []
    for spec, cls in registry.plugins("web"):
        if not (isinstance(cls, type) and issubclass(cls, ServiceExtension)):
            from ..stacks.registry import StackConfigError

            raise StackConfigError(f"web plug-in {spec!r} is not a ServiceExtension subclass")
        out.append(cls)
    return out


def load_extensions(service: Any) -> list[ServiceExtension]:
    """One instance of every extension of the service's stacks."""
    return [cls(service) for cls in extension_classes(service.stack_registry)]
