"""Parameter sweeps: one submission of a notebook over many parameter sets.

A sweep request is a job request (:data:`dass.jobs.manager.REQUEST_KEYS`) with, in addition,
``sweep`` and/or ``parameter_sets``::

    {"notebook": "sem/service/image_summary.ipynb",
     "parameters": {"input_dataset": "p-2026-001/sem-nanowires"},   # the same in every element
     "sweep": {"threshold": [0.1, 0.2, 0.3], "method": ["a", "b"]},  # every combination
     "parameter_sets": [{"max_images": 2}, {"max_images": 5}]}       # each set once

Its elements are every parameter set (or one empty set) combined with every combination of the
swept values (the cartesian product, in the order the names are given, the last name varying
fastest); an element's parameters are ``parameters``, overridden by its parameter set, plus its
swept values. Above: 2 sets × 3 thresholds × 2 methods = 12 elements.

:func:`expand_sweep` is pure: it checks the shape of the request and expands it; the manager
then checks every element's parameters against the notebook like a single job's, and each
element becomes an ordinary job carrying the sweep's id and its index.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import json_kind
from .params import ParameterError

__all__ = ["SweepElement", "expand_sweep", "sweep_size"]

_EXAMPLE_AXIS = '{"threshold": [0.1, 0.2, 0.3]}'


@dataclass(frozen=True)
class SweepElement:
    """One element of a sweep.

    Attributes
    ----------
    index : int
        Its place in the sweep (0, 1, …).
    parameters : dict
        Its parameter values (not yet checked against the notebook).
    origin : dict of str to str
        Where each value came from, by parameter name: ``"parameters"``,
        ``"parameter_sets[1]"`` or ``"sweep.threshold[2]"`` (error messages name it).
    parameter_set : int or None
        The index of its parameter set (None: the sweep has none).
    """

    index: int
    parameters: dict[str, Any]
    origin: dict[str, str]
    parameter_set: int | None = None

    def describe(self) -> str:
        """The element's swept and set values in one line, for messages."""
        shown = {k: v for k, v in self.parameters.items() if self.origin.get(k) != "parameters"}
        return ", ".join(f"{k}={json.dumps(v)[:40]}" for k, v in shown.items()) or "no varied parameter"


def sweep_size(sweep: Mapping[str, list] | None, parameter_sets: list | None) -> int:
    """How many elements a (well-formed) sweep has, without expanding it.

    >>> sweep_size({"a": [1, 2, 3], "b": ["x", "y"]}, None), sweep_size({"a": [1, 2]}, [{}, {}, {}])
    (6, 6)
    """
    axes = math.prod(len(v) for v in (sweep or {}).values())
    return axes * (len(parameter_sets) if parameter_sets else 1)


def expand_sweep(
    parameters: Any,
    sweep: Any,
    parameter_sets: Any,
    *,
    max_elements: int,
) -> list[SweepElement]:
    """Check the shape of a sweep request and expand it into its elements.

    Parameters
    ----------
    parameters : dict or None
        The fixed parameters of every element.
    sweep : dict of str to list, or None
        Values to try by parameter name; every combination is an element.
    parameter_sets : list of dict, or None
        Explicit parameter sets; each is combined with every combination of ``sweep``.
    max_elements : int
        The most elements allowed (``c.JobManager.max_sweep_jobs``).

    Returns
    -------
    list of SweepElement
        In order: parameter sets outermost, then the swept names as given, the last fastest.

    Raises
    ------
    ParameterError
        (422) naming the field at fault (``sweep``, ``sweep.<name>``, ``parameter_sets[<i>]``)
        and what to fix: neither ``sweep`` nor ``parameter_sets``, a value list that is not a
        list, is empty or repeats a value, a name both fixed and swept, more than
        ``max_elements`` elements.

    Examples
    --------
    >>> [e.parameters for e in expand_sweep({"n": 1}, {"a": [1, 2], "b": ["x", "y"]}, None, max_elements=10)]
    [{'n': 1, 'a': 1, 'b': 'x'}, {'n': 1, 'a': 1, 'b': 'y'}, {'n': 1, 'a': 2, 'b': 'x'}, {'n': 1, 'a': 2, 'b': 'y'}]
    >>> [e.parameters for e in expand_sweep({"n": 1}, None, [{"n": 2}, {"m": 3}], max_elements=10)]
    [{'n': 2}, {'n': 1, 'm': 3}]
    >>> expand_sweep(None, {"a": []}, None, max_elements=10)
    Traceback (most recent call last):
    ...
    dass.jobs.params.ParameterError: sweep.a is empty: give at least one value to try
    """
    base = {} if parameters is None else parameters
    if not isinstance(base, Mapping):
        raise ParameterError("parameters must be an object of parameter names and values", field="parameters")
    if sweep is None and parameter_sets is None:
        raise ParameterError(
            f"a sweep needs 'sweep' (parameter names and lists of values to try, e.g. {_EXAMPLE_AXIS}) "
            'or \'parameter_sets\' (a list of parameter objects, e.g. [{"threshold": 0.1}]), or both',
            field="sweep",
        )
    axes = _check_axes(sweep, base)
    sets = _check_sets(parameter_sets, axes)
    count = sweep_size(axes, sets)
    if count > max_elements:
        raise ParameterError(
            f"the sweep has {count} elements, more than the {max_elements} allowed "
            "(c.JobManager.max_sweep_jobs); try fewer values, or split it into several sweeps",
            field="sweep" if axes else "parameter_sets",
        )
    names = list(axes)
    elements = []
    for s, chosen in enumerate(sets or [{}]):
        for combo in itertools.product(*(range(len(axes[n])) for n in names)):
            values = dict(base)
            origin = {k: "parameters" for k in base}
            values.update(chosen)
            origin.update({k: f"parameter_sets[{s}]" for k in chosen})
            for name, i in zip(names, combo):
                values[name] = axes[name][i]
                origin[name] = f"sweep.{name}[{i}]"
            elements.append(SweepElement(len(elements), values, origin, s if sets else None))
    return elements


def _check_axes(sweep: Any, base: Mapping[str, Any]) -> dict[str, list]:
    if sweep is None:
        return {}
    if not isinstance(sweep, Mapping) or not sweep:
        raise ParameterError(
            f"sweep must be an object of parameter names and lists of values to try, e.g. {_EXAMPLE_AXIS}",
            field="sweep",
        )
    for name, values in sweep.items():
        field = f"sweep.{name}"
        if not isinstance(values, list):
            raise ParameterError(
                f"{field} must be a list of values to try, e.g. [0.1, 0.2], not {json_kind(values)}; "
                "a value that stays the same goes in parameters",
                field=field,
            )
        if not values:
            raise ParameterError(f"{field} is empty: give at least one value to try", field=field)
        seen: set[str] = set()
        for value in values:
            key = json.dumps(value, sort_keys=True, default=str)
            if key in seen:
                raise ParameterError(f"{field} lists {key[:60]} twice: give each value once", field=field)
            seen.add(key)
        if name in base:
            raise ParameterError(
                f"parameter '{name}' is both fixed (parameters) and swept (sweep): give it in one of them",
                field=field,
            )
    return dict(sweep)


def _check_sets(parameter_sets: Any, axes: Mapping[str, list]) -> list[dict[str, Any]] | None:
    if parameter_sets is None:
        return None
    if not isinstance(parameter_sets, list) or not parameter_sets:
        what = "empty" if parameter_sets == [] else json_kind(parameter_sets)
        raise ParameterError(
            'parameter_sets must be a non-empty list of parameter objects, e.g. [{"threshold": 0.1}, '
            f'{{"threshold": 0.2}}], not {what}',
            field="parameter_sets",
        )
    seen: set[str] = set()
    for i, chosen in enumerate(parameter_sets):
        field = f"parameter_sets[{i}]"
        if not isinstance(chosen, Mapping):
            raise ParameterError(f"{field} must be an object of parameter names and values, not {json_kind(chosen)}",
                                 field=field)
        both = sorted(set(chosen) & set(axes))
        if both:
            raise ParameterError(
                f"parameter '{both[0]}' is both in {field} and swept (sweep): give it in one of them", field=field
            )
        key = json.dumps(chosen, sort_keys=True, default=str)
        if key in seen:
            raise ParameterError(f"{field} repeats an earlier parameter set: give each set once", field=field)
        seen.add(key)
    return [dict(s) for s in parameter_sets]
