"""Validation of a stack × size × datasets choice: one implementation for sessions and jobs.

``user_options`` of a dass session is ``{"stack": str, "size": str, "datasets": [str]}``.
The HTML form is turned into that shape by :func:`options_from_form`; a REST spawn sends it
as the JSON body; a job submission builds it from its request. All go through
:func:`validate_selection` before anything starts, and its :class:`Selection` is what
:func:`dass.stacks.session.build_session_spec` and the job builders turn into a run.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import DassError
from ..data.access import Identity
from .registry import Size, Stack, StackRegistry

OPTION_KEYS = ("stack", "size", "datasets")


class SelectionError(DassError, ValueError, status=400):
    """The chosen stack, size or datasets cannot be used; the message says what to fix.

    Raised for spawns (the hub answers 400) and job submissions (the service answers 422, or
    403 when ``forbidden``).

    ``field`` names the choice at fault (``stack``, ``size``, ``datasets``); ``forbidden`` is
    true when the user may not use what they chose (an HTTP API answers 403 then).
    """

    def __init__(self, message: str, *, field: str = "", forbidden: bool = False) -> None:
        super().__init__(message, status=403 if forbidden else None)
        self.field = field
        self.forbidden = forbidden


@dataclass(frozen=True)
class Selection:
    """Validated spawn choices."""

    stack: Stack
    size: Size
    datasets: tuple  # DatasetRecord, in the order chosen

    def to_user_options(self) -> dict[str, Any]:
        return {
            "stack": self.stack.name,
            "size": self.size.name,
            "datasets": [d.id for d in self.datasets],
        }


def options_from_form(form_data: Mapping[str, list[str]]) -> dict[str, Any]:
    """Turn the spawn form's fields into ``user_options`` (no validation here)."""
    options: dict[str, Any] = {}
    for key in ("stack", "size"):
        values = form_data.get(key) or []
        if values:
            options[key] = values[0]
    options["datasets"] = list(form_data.get("datasets") or [])
    return options


def validate_selection(
    options: Any,
    identity: Identity,
    registry: StackRegistry,
    catalog,
    *,
    max_datasets: int,
    default_stack: str = "",
    today: datetime.date | None = None,
    known: Mapping[str, Any] | None = None,
) -> Selection:
    """Check spawn choices against the registry, the catalogue and the access rules.

    ``known`` maps dataset ids already found visible to this identity (by the same rule, in
    the same request, e.g. a job's dataset parameters) to their records: those are not looked
    up again.

    Raises
    ------
    SelectionError
        With a message naming the wrong choice and what may be chosen instead.
    """
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise SelectionError(
            "user_options must be a JSON object like "
            '{"stack": "sem", "size": "small", "datasets": ["proposal/dataset"]}'
        )
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise SelectionError(
            f"unknown option(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(OPTION_KEYS)}"
        )

    usable = registry.for_identity(identity)
    if not usable:
        raise SelectionError("no analysis stack is available to you; ask the facility staff")
    stack_name = options.get("stack") or default_stack or usable[0].name
    if not isinstance(stack_name, str):
        raise SelectionError("stack must be a string naming a stack", field="stack")
    stack = registry.get(stack_name)
    names = ", ".join(s.name for s in usable)
    if stack is None:
        raise SelectionError(f"unknown stack {stack_name!r}; choose one of: {names}", field="stack")
    if not stack.allows(identity):
        raise SelectionError(
            f"stack {stack_name!r} is not available to you; choose one of: {names}", field="stack", forbidden=True
        )

    sizes = registry.sizes_for(stack, identity)
    size_name = options.get("size") or stack.default_size
    if not isinstance(size_name, str):
        raise SelectionError("size must be a string naming a size", field="size")
    size = next((s for s in sizes if s.name == size_name), None)
    if size is None:
        allowed = ", ".join(s.name for s in sizes) or "none"
        if size_name in registry.all_sizes:
            raise SelectionError(
                f"size {size_name!r} is not available for stack {stack.name!r}; choose one of: {allowed}",
                field="size",
            )
        raise SelectionError(f"unknown size {size_name!r}; choose one of: {allowed}", field="size")

    ids = options.get("datasets") or []
    if isinstance(ids, str):
        ids = [ids]
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, str) for i in ids):
        raise SelectionError('datasets must be a list of dataset ids like "proposal/dataset"', field="datasets")
    ids = list(dict.fromkeys(ids))  # drop repeats, keep order
    if len(ids) > max_datasets:
        raise SelectionError(
            f"too many datasets: {len(ids)} chosen, at most {max_datasets} per session; "
            "choose fewer or start a second named server",
            field="datasets",
        )
    visible = {i: known[i] for i in ids if known and i in known}
    missing = [i for i in ids if i not in visible]
    if missing:
        visible.update(catalog.visible(identity, missing, today=today))
    denied = [i for i in ids if i not in visible]
    if denied:
        # one message for "missing" and "forbidden": existence is not revealed
        raise SelectionError(
            f"dataset(s) {', '.join(map(repr, denied))} do not exist or you may not use them; "
            "see the datasets of your proposals in the spawn form or GET /services/dass/api/datasets",
            field="datasets",
            forbidden=True,
        )
    return Selection(stack=stack, size=size, datasets=tuple(visible[i] for i in ids))
