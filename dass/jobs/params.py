"""Typed notebook parameters: what a job notebook declares, and checking what a user submits.

Why one module: the rules below are one contract (declared types, JSON and form coercion,
dataset parameters); half of the file is the docstring and examples that document it.

A job notebook declares its parameters in the cell tagged ``parameters``, as papermill reads
it::

    n = 3                          # how many
    scale: float = 1               # annotated: the annotation wins over the default's type
    label = "run"
    input_dataset: str = ""        # dataset: the images to analyse
    count: int = None              # annotated, default None: the user must give it

:func:`inspect_parameters` turns that cell into :class:`Parameter` values,
:func:`validate_parameters` checks a submission (from the REST API or the web form) against
them, and :func:`form_fields` describes the web form. All three are pure: no database, no
files written, no network.

Rules
-----
type
    The annotation when it is one of ``int``, ``float``, ``str``, ``bool``, ``list``
    (also ``List[...]``, ``tuple``, ``Tuple[...]``, ``Sequence[...]``), ``dict`` (also
    ``Dict[...]``, ``Mapping[...]``) or ``Any``; ``Optional[X]`` counts as ``X``. Without one
    (or with another annotation), the type of the default's Python literal (``True`` is a
    bool, not an int; tuples are lists); ``"any"`` when the default is ``None`` or is not a
    literal (``2 ** 10``, ``os.environ["X"]``). papermill's ``# type: int`` comment counts as
    an annotation.
dataset parameters
    A parameter is a dataset parameter when its help comment starts with the word ``dataset``
    or ``datasets`` (``# dataset: the images to analyse``), or its name is ``dataset``,
    ``datasets`` or ends with ``_dataset`` / ``_datasets``, and its type from the rule above is
    ``str`` or ``any`` (type ``"dataset"``: one id ``"<proposal>/<name>"``) or ``list`` (type
    ``"datasets"``: a list of ids). A leading ``dataset:`` marker is removed from ``help``.
required
    When the default is the literal ``None``, the type is not ``"any"`` and the annotation is
    not ``Optional[...]``: ``count: int = None`` must be given; ``x = None`` (type any) and
    ``x: Optional[int] = None`` need not. A default that is not a literal is never required:
    the notebook computes it.
values
    Strictly typed (the JSON API): ``int`` takes integers (not booleans, not ``3.0``);
    ``float`` takes integers and finite floats (returned as ``float``); ``str``, ``bool``,
    ``list``, ``dict`` take exactly that; ``any`` takes any JSON value. Every value must be
    plain JSON (no NaN or infinity, object keys are text), no text in it may be longer than
    :data:`MAX_TEXT_CHARS` and its JSON text no longer than :data:`MAX_VALUE_CHARS`. ``null``
    is accepted for a parameter whose default is ``None`` and that is not required (it is the
    default). A dataset parameter takes an id that ``visible_dataset`` accepts (else 403, the
    same answer for "does not exist" and "may not see", so nothing leaks); ``""`` is accepted
    when the default is ``""`` ("none chosen").
form values (``coerce_strings=True``)
    Form fields are text, so text is converted: ``"3"`` to an int, ``"1.5"`` to a float,
    ``"true"/"false"`` (also ``on/off``, ``yes/no``, ``1/0``) to a bool, JSON text to a list or
    dict, JSON text (or else the text itself) for ``any``, comma-separated ids (or a JSON list)
    for ``datasets``. An empty field means "not given" (the notebook default is kept) for every
    type but ``str``.
defaults
    Parameters not given keep the notebook's default and are not in the returned values, but a
    dataset parameter's non-empty default is a dataset the job reads: it is checked like a
    given value and returned among the dataset ids.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import DassError
from ..data.metadata import NAME_RE

__all__ = [
    "Parameter",
    "ParameterError",
    "PARAMETER_TYPES",
    "MAX_TEXT_CHARS",
    "MAX_VALUE_CHARS",
    "inspect_parameters",
    "validate_parameters",
    "form_fields",
]

#: The parameter types, as :attr:`Parameter.type` names them.
PARAMETER_TYPES = ("int", "float", "str", "bool", "list", "dict", "dataset", "datasets", "any")
#: Longest text (in characters) allowed anywhere in a parameter value.
MAX_TEXT_CHARS = 10_000
#: Longest JSON text of one parameter value; job records stay small.
MAX_VALUE_CHARS = 100_000

_ANNOTATIONS = {
    "int": "int",
    "float": "float",
    "str": "str",
    "bool": "bool",
    "list": "list",
    "List": "list",
    "tuple": "list",
    "Tuple": "list",
    "Sequence": "list",
    "dict": "dict",
    "Dict": "dict",
    "Mapping": "dict",
    "Any": "any",
    "object": "any",
}
_OPTIONAL = re.compile(r"^Optional\s*\[(?P<inner>.*)\]$")
_DATASET_HELP = re.compile(r"^datasets?\b", re.IGNORECASE)
_DATASET_MARKER = re.compile(r"^datasets?\s*:\s*", re.IGNORECASE)
_INT_TEXT = re.compile(r"^\s*[+-]?\d+\s*$")
_FLOAT_TEXT = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
_TRUE = frozenset({"true", "on", "yes", "1"})
_FALSE = frozenset({"false", "off", "no", "0"})
_ID_FORMAT = '"<proposal>/<name>"'


class ParameterError(DassError, ValueError, status=422):
    """A submitted parameter is wrong; the message names the field and what to fix.

    Attributes
    ----------
    field : str
        The parameter name, or ``"parameters"`` when the whole submission is wrong.
    status : int
        HTTP status to answer: 422 (wrong type, unknown, missing) or 403 (a dataset that does
        not exist or the user may not use).
    """

    def __init__(self, message: str, *, field: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status

    def to_json(self) -> dict[str, Any]:
        """The REST error body ``{"status", "message", "field"}``."""
        return {"status": self.status, "message": self.message, "field": self.field}


@dataclass(frozen=True)
class Parameter:
    """One parameter declared in a notebook's ``parameters`` cell.

    Attributes
    ----------
    name : str
        The variable name.
    type : str
        One of :data:`PARAMETER_TYPES` (see the module rules).
    default : Any
        The default as a Python value (``ast.literal_eval`` of ``default_text``); ``None`` when
        it is not a literal.
    default_text : str
        The default as written in the cell.
    help : str
        The inline comment, without a leading ``dataset:`` marker.
    required : bool
        Whether a submission must give it (default ``None``, typed, not ``Optional``).
    """

    name: str
    type: str
    default: Any
    default_text: str
    help: str
    required: bool

    @classmethod
    def from_inspection(cls, entry: Mapping[str, Any]) -> Parameter:
        """Build from one entry of :func:`papermill.inspect_notebook`'s answer
        (``name``, ``inferred_type_name``, ``default``, ``help``)."""
        name = str(entry["name"])
        default_text = str(entry.get("default") or "").strip()
        help_text = str(entry.get("help") or "").strip()
        default, literal = _literal(default_text)
        base, optional = _annotation_type(str(entry.get("inferred_type_name") or "None"))
        if base is None:
            base = _literal_type(default) if literal else "any"
        is_dataset = bool(_DATASET_HELP.match(help_text)) or name in ("dataset", "datasets") or (
            name.endswith(("_dataset", "_datasets"))
        )
        kind = base
        if is_dataset and base in ("str", "any"):
            kind = "dataset"
        elif is_dataset and base == "list":
            kind = "datasets"
        if kind in ("dataset", "datasets"):
            help_text = _DATASET_MARKER.sub("", help_text, count=1)
        required = default_text == "None" and kind != "any" and not optional
        return cls(name, kind, default, default_text, help_text, required)

    def to_json(self) -> dict[str, Any]:
        """``{"name", "type", "default", "help", "required"}`` for the API and the form
        (a default that is not plain JSON, such as a set, is given as ``null``)."""
        try:
            default = _plain(self.default)
        except _NotPlain:
            default = None
        return {
            "name": self.name,
            "type": self.type,
            "default": default,
            "help": self.help,
            "required": self.required,
        }


# ---------------------------------------------------------------------------------------------
# reading the parameters cell


def inspect_parameters(notebook: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Parameter]:
    """The parameters a notebook declares, by name, in the order of its ``parameters`` cell.

    The cell is parsed by papermill's own Python translator (what
    :func:`papermill.inspect_notebook` runs), so a job form shows what papermill will inject.
    Unlike ``inspect_notebook`` this accepts a notebook node, a path with braces in it, and a
    notebook whose metadata names no kernel (read as Python, as the job runner runs it).

    Parameters
    ----------
    notebook : path-like, URL or nbformat.NotebookNode
        The notebook (paths and URLs are read with papermill's I/O handlers).

    Returns
    -------
    dict of str to Parameter
        Empty when no cell is tagged ``parameters``. Lines papermill cannot parse (two ``=``
        on one line, an annotation with a dot such as ``np.ndarray``) are not parameters.

    Examples
    --------
    >>> import nbformat
    >>> from nbformat.v4 import new_code_cell, new_notebook
    >>> cell = new_code_cell('n = 3\\ninput_dataset: str = ""  # dataset: the images')
    >>> cell.metadata["tags"] = ["parameters"]
    >>> params = inspect_parameters(new_notebook(cells=[cell]))
    >>> params["n"].type, params["input_dataset"].type, params["input_dataset"].help
    ('int', 'dataset', 'the images')
    """
    from papermill.iorw import load_notebook_node
    from papermill.translators import papermill_translators

    if isinstance(notebook, Mapping):
        nb = notebook
    else:
        nb = load_notebook_node(os.fspath(notebook))
    cells = nb.get("cells") or []
    tagged = [c for c in cells if "parameters" in ((c.get("metadata") or {}).get("tags") or ())]
    if not tagged:
        return {}
    metadata = nb.get("metadata") or {}
    kernelspec = metadata.get("kernelspec") or {}
    kernel = kernelspec.get("name") or "python3"
    language = (metadata.get("language_info") or {}).get("name") or kernelspec.get("language") or "python"
    translator = papermill_translators.find_translator(kernel, language)
    cell = dict(tagged[0])
    if not isinstance(cell.get("source", ""), str):  # a raw JSON notebook keeps lines as a list
        cell["source"] = "".join(cell["source"])
    try:
        found = translator.inspect(cell)
    except NotImplementedError:  # papermill reads parameters of Python notebooks only
        return {}
    params: dict[str, Parameter] = {}
    for entry in found:
        params.pop(entry.name, None)  # a name assigned twice: the last assignment wins
        params[entry.name] = Parameter.from_inspection(entry._asdict())
    return params


def _literal(text: str) -> tuple[Any, bool]:
    try:
        return ast.literal_eval(text), True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None, False


def _annotation_type(annotation: str) -> tuple[str | None, bool]:
    """(type or None when unknown, whether it was ``Optional[...]``)."""
    text = annotation.strip().strip("\"'").strip()
    optional = False
    match = _OPTIONAL.match(text)
    if match:
        text, optional = match["inner"].strip(), True
    head = text.split("[", 1)[0].strip()
    return _ANNOTATIONS.get(head), optional


def _literal_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return "any"


# ---------------------------------------------------------------------------------------------
# checking a submission


def validate_parameters(
    params: Any,
    declared: Mapping[str, Parameter],
    *,
    visible_dataset: Callable[[str], bool] | None = None,
    coerce_strings: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """Check submitted parameter values against a notebook's declared parameters.

    Parameters
    ----------
    params : dict
        Submitted values by name (the ``parameters`` object of a job request, or form fields).
    declared : dict of str to Parameter
        From :func:`inspect_parameters`.
    visible_dataset : callable, optional
        ``visible_dataset(dataset_id) -> bool``: whether the dataset exists and the submitting
        user may use it. When not given, no dataset may be used.
    coerce_strings : bool
        Convert text to the declared type (web forms, whose fields are text); see the module
        rules. Off for the JSON API, where ``"3"`` is not an int.

    Returns
    -------
    values : dict
        The given values, converted (``float`` parameters as floats, tuples as lists), in the
        notebook's order. Parameters not given are absent: they keep the notebook default.
    dataset_ids : list of str
        The datasets the job reads through its dataset parameters (given values and non-empty
        defaults), each once, in the notebook's order.

    Raises
    ------
    ParameterError
        ``status`` 422 for a submission that is not an object, an unknown name, a missing
        required value, a wrong type, a value that is not plain JSON or is too long; 403 for a
        dataset that does not exist or the user may not use.

    Examples
    --------
    >>> declared = {"n": Parameter("n", "int", 3, "3", "", False)}
    >>> validate_parameters({"n": 5}, declared)
    ({'n': 5}, [])
    >>> validate_parameters({"n": "5"}, declared, coerce_strings=True)
    ({'n': 5}, [])
    >>> validate_parameters({"n": "abc"}, declared)
    Traceback (most recent call last):
    ...
    dass.jobs.params.ParameterError: parameter 'n': expected int, got str "abc"
    """
    if not isinstance(params, Mapping):
        raise ParameterError(
            "parameters must be an object mapping parameter names to values, "
            f"got {_type_name(params)}",
            field="parameters",
        )
    unknown = [name for name in params if name not in declared]
    if unknown:
        takes = ", ".join(declared) if declared else None
        names = ", ".join(f"'{name}'" for name in unknown)
        noun = "parameter" if len(unknown) == 1 else "parameters"
        raise ParameterError(
            f"unknown {noun} {names}; "
            + (f"this notebook takes: {takes}" if takes else "this notebook takes no parameters"),
            field=str(unknown[0]),
        )

    values: dict[str, Any] = {}
    for name, param in declared.items():
        given = name in params
        value = params[name] if given else None
        if given and coerce_strings and isinstance(value, str) and value == "" and param.type != "str":
            given = False  # an empty form field: keep the notebook default
        if not given:
            if param.required:
                raise _required(param)
            continue
        value = _checked(param, value, coerce_strings)
        if value is None and param.required:
            raise _required(param)
        values[name] = value

    dataset_ids: list[str] = []
    for name, param in declared.items():
        if param.type not in ("dataset", "datasets"):
            continue
        if name in values:
            ids, from_default = values[name], False
        else:
            ids, from_default = _default_ids(param), True
        for dataset_id in [ids] if isinstance(ids, str) else ids or []:
            if dataset_id == "" or dataset_id in dataset_ids:
                continue
            if visible_dataset is None or not visible_dataset(dataset_id):
                note = " (the notebook's default; choose another)" if from_default else ""
                raise ParameterError(
                    f"parameter '{name}': dataset '{dataset_id}' does not exist or you may not "
                    f"use it{note}",
                    field=name,
                    status=403,
                )
            dataset_ids.append(dataset_id)
    return values, dataset_ids


def _required(param: Parameter) -> ParameterError:
    return ParameterError(
        f"parameter '{param.name}' is required (expected {_expected(param.type)}); "
        "the notebook has no default for it",
        field=param.name,
    )


def _default_ids(param: Parameter) -> list[str]:
    """The dataset ids of a dataset parameter's default (checked, since the job reads them)."""
    default = param.default
    if default is None or default == "" or default == []:
        return []
    ids = [default] if param.type == "dataset" else default
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, str) and _is_dataset_id(i) for i in ids):
        raise ParameterError(
            f"parameter '{param.name}': the notebook's default {param.default_text} is not "
            f"{_expected(param.type)}; give one",
            field=param.name,
        )
    return list(ids)


def _checked(param: Parameter, value: Any, coerce_strings: bool) -> Any:
    name = param.name
    try:
        value = _plain(value)
    except _NotPlain as e:
        raise ParameterError(f"parameter '{name}': {e}", field=name) from None
    _check_size(name, value)
    if value is None:
        if param.type == "any" or param.default_text == "None":
            return None
        raise _wrong(param, value)
    if coerce_strings and isinstance(value, str) and param.type not in ("str", "dataset"):
        value = _from_text(param, value)
        _check_size(name, value)
    kind = param.type
    if kind == "int" and type(value) is int:
        return value
    if kind == "float" and type(value) in (int, float):
        try:
            as_float = float(value)
        except OverflowError:
            raise _wrong(param, value) from None
        if math.isfinite(as_float):
            return as_float
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "list" and isinstance(value, list):
        return value
    if kind == "dict" and isinstance(value, dict):
        return value
    if kind == "any":
        return value
    if kind == "dataset" and isinstance(value, str):
        if _is_dataset_id(value) or (value == "" and param.default == ""):
            return value
    if kind == "datasets" and isinstance(value, list):
        if all(isinstance(v, str) and _is_dataset_id(v) for v in value):
            return value
    raise _wrong(param, value)


def _from_text(param: Parameter, text: str) -> Any:
    """A form field's text as the declared type (left as text when it does not convert, so
    that the type check reports it)."""
    kind = param.type
    if kind == "int" and _INT_TEXT.match(text):
        return int(text)
    if kind == "float" and _FLOAT_TEXT.match(text) and math.isfinite(float(text)):
        return float(text)
    if kind == "bool" and text.strip().lower() in _TRUE | _FALSE:
        return text.strip().lower() in _TRUE
    if kind in ("list", "dict", "any") or (kind == "datasets" and text.lstrip().startswith("[")):
        try:
            parsed = _plain(json.loads(text))
        except (ValueError, RecursionError, _NotPlain):
            return text
        return parsed
    if kind == "datasets":
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _wrong(param: Parameter, value: Any) -> ParameterError:
    return ParameterError(
        f"parameter '{param.name}': expected {_expected(param.type)}, got {_describe(value)}",
        field=param.name,
    )


def _expected(kind: str) -> str:
    if kind == "dataset":
        return f"a dataset id {_ID_FORMAT}"
    if kind == "datasets":
        return f"a list of dataset ids {_ID_FORMAT}"
    if kind == "any":
        return "a JSON value"
    return kind


def _is_dataset_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(NAME_RE.match(p) for p in parts)


def _check_size(name: str, value: Any) -> None:
    for text in _texts(value):
        if len(text) > MAX_TEXT_CHARS:
            raise ParameterError(
                f"parameter '{name}': text of {len(text)} characters, more than the "
                f"{MAX_TEXT_CHARS} allowed",
                field=name,
            )
    size = len(json.dumps(value, ensure_ascii=False))
    if size > MAX_VALUE_CHARS:
        raise ParameterError(
            f"parameter '{name}': value of {size} characters as JSON, more than the "
            f"{MAX_VALUE_CHARS} allowed",
            field=name,
        )


def _texts(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _texts(item)


class _NotPlain(DassError, ValueError, status=422):
    pass


def _plain(value: Any, _depth: int = 0) -> Any:
    """``value`` as plain JSON data (builtin types, tuples as lists), or :class:`_NotPlain`."""
    if _depth > 100:
        raise _NotPlain("value is nested more than 100 levels deep")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value.bit_length() > 10_000:  # beyond what JSON and str() handle
            raise _NotPlain("expected a number, got an int of more than 3000 digits")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotPlain(f"expected a finite number, got float {value}")
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, _depth + 1) for v in value]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NotPlain(f"object keys must be text, got {_type_name(key)} key {key!r}")
            out[str(key)] = _plain(item, _depth + 1)
        return out
    raise _NotPlain(
        "expected a JSON value (null, true/false, number, text, list or object), "
        f"got {_type_name(value)}"
    )


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _describe(value: Any, limit: int = 60) -> str:
    """``str "abc"``, ``int 3``, ``null``: the type and JSON text of a submitted value."""
    if value is None:
        return "null"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return _type_name(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"{_type_name(value)} {text}"


# ---------------------------------------------------------------------------------------------
# the web form


def form_fields(declared: Mapping[str, Parameter]) -> list[dict[str, Any]]:
    """The fields of a job form for ``declared``, in the notebook's order (data, not HTML).

    Each field is ``{"name", "type", "input", "step", "value", "help", "required"}``:

    ====================  ==================  ======  =========================================
    type                  input               step    value
    ====================  ==================  ======  =========================================
    int                   ``number``          1       the default, or None
    float                 ``number``          "any"   the default as a float, or None
    str                   ``text``            None    the default, or ""
    bool                  ``checkbox``        None    the default (False when not a bool)
    list, dict, any       ``textarea``        None    the default as JSON text, or ""
    dataset               ``select-dataset``  None    the default id, or ""
    datasets              ``select-dataset``  None    the default ids (a list; a multiple
                                                      select)
    ====================  ==================  ======  =========================================

    Submit the form's text to :func:`validate_parameters` with ``coerce_strings=True``, where an
    empty field keeps the notebook default; a checkbox must submit ``"true"`` or ``"false"``
    (an unchecked HTML checkbox sends nothing, which would keep the default).
    """
    fields = []
    for param in declared.values():
        kind, default = param.type, param.default
        step: Any = None
        value: Any
        if kind in ("int", "float"):
            input_ = "number"
            step = 1 if kind == "int" else "any"
            ok = isinstance(default, (int, float)) and not isinstance(default, bool)
            value = (int(default) if kind == "int" else float(default)) if ok else None
        elif kind == "str":
            input_, value = "text", default if isinstance(default, str) else ""
        elif kind == "bool":
            input_, value = "checkbox", default if isinstance(default, bool) else False
        elif kind == "dataset":
            input_, value = "select-dataset", default if isinstance(default, str) else ""
        elif kind == "datasets":
            input_ = "select-dataset"
            value = [v for v in default if isinstance(v, str)] if isinstance(default, (list, tuple)) else []
        else:
            input_ = "textarea"
            try:
                value = "" if default is None else json.dumps(_plain(default), ensure_ascii=False)
            except _NotPlain:
                value = ""
        fields.append(
            {
                "name": param.name,
                "type": kind,
                "input": input_,
                "step": step,
                "value": value,
                "help": param.help,
                "required": param.required,
            }
        )
    return fields
