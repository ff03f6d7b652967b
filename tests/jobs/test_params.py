"""Tests of dass.jobs.params: reading a notebook's parameters, checking submissions, the form."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from dass.jobs.params import (
    MAX_TEXT_CHARS,
    MAX_VALUE_CHARS,
    PARAMETER_TYPES,
    Parameter,
    ParameterError,
    form_fields,
    inspect_parameters,
    validate_parameters,
)

NOTEBOOKS = Path(__file__).parent / "notebooks"
TYPED = NOTEBOOKS / "params_typed.ipynb"
NONE = NOTEBOOKS / "params_none.ipynb"
VISIBLE = {"p-2026-001/sem-nanowires", "p-2026-001/sem-particles", "p-2025-900/sem-reference-public"}


def visible(dataset_id: str) -> bool:
    return dataset_id in VISIBLE


def notebook(source: str, *, tagged: bool = True, metadata: dict | None = None) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    if tagged:
        cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_markdown_cell("# test"), cell])
    nb.metadata = (
        metadata
        if metadata is not None
        else {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
    )
    return nb


def declare(source: str) -> dict[str, Parameter]:
    return inspect_parameters(notebook(source))


@pytest.fixture(scope="module")
def typed() -> dict[str, Parameter]:
    return inspect_parameters(TYPED)


#: the four parameters of the example in the module's messages
SMALL = 'n = 3\nscale = 1.5\nlabel = "run"\ninput_dataset: str = ""  # dataset: the images to analyse'


# ---------------------------------------------------------------------------- inspection

TYPED_EXPECTED = [
    # name, type, default, default_text, help, required
    ("n", "int", 3, "3", "how many", False),
    ("scale", "float", 1.5, "1.5", "", False),
    ("label", "str", "run", '"run"', "", False),
    ("verbose", "bool", False, "False", "", False),
    ("tags", "list", ["a", "b"], '["a", "b"]', "", False),
    ("options", "dict", {"k": 1}, '{"k": 1}', "", False),
    ("anything", "any", None, "None", "", False),
    ("computed", "any", None, "2 ** 10", "not a literal: the notebook computes it", False),
    ("count", "int", None, "None", "required: no default", True),
    ("ratio", "float", 2, "2", "", False),
    ("values", "list", [1, 2], "[1, 2]", "", False),
    ("mapping", "dict", {}, "{}", "", False),
    ("threshold", "float", None, "None", "", False),
    ("mode", "str", "fast", '"fast"', "", False),
    ("input_dataset", "dataset", "", '""', "the images to analyse", False),
    (
        "reference_dataset",
        "dataset",
        "p-2025-900/sem-reference-public",
        '"p-2025-900/sem-reference-public"',
        "",
        False,
    ),
    ("extra_datasets", "datasets", [], "[]", "more inputs", False),
]


def test_typed_notebook_parameters_in_cell_order(typed):
    assert list(typed) == [row[0] for row in TYPED_EXPECTED]


@pytest.mark.parametrize("name, kind, default, default_text, help_text, required", TYPED_EXPECTED)
def test_typed_notebook_parameter(typed, name, kind, default, default_text, help_text, required):
    assert typed[name] == Parameter(name, kind, default, default_text, help_text, required)
    assert typed[name].type in PARAMETER_TYPES


def test_inspection_agrees_with_papermill():
    papermill = pytest.importorskip("papermill")
    raw = papermill.inspect_notebook(str(TYPED))
    ours = inspect_parameters(TYPED)
    assert list(raw) == list(ours)
    for name, entry in raw.items():
        assert ours[name].default_text == entry["default"]
        assert entry["help"].endswith(ours[name].help)


def test_a_notebook_without_a_parameters_cell_has_no_parameters():
    assert inspect_parameters(NONE) == {}
    assert inspect_parameters(notebook("n = 3", tagged=False)) == {}


def test_a_notebook_without_parameters_refuses_every_submitted_name():
    with pytest.raises(ParameterError) as err:
        validate_parameters({"n": 3}, inspect_parameters(NONE))
    assert str(err.value) == "unknown parameter 'n'; this notebook takes no parameters"
    assert (err.value.field, err.value.status) == ("n", 422)
    assert validate_parameters({}, inspect_parameters(NONE)) == ({}, [])


def test_node_path_and_raw_json_give_the_same_parameters(tmp_path, typed):
    node = nbformat.read(TYPED, as_version=4)
    assert inspect_parameters(node) == typed
    raw = json.loads(TYPED.read_text())
    assert isinstance(raw["cells"][2]["source"], list)  # sources are lists of lines on disk
    assert inspect_parameters(raw) == typed
    odd = tmp_path / "odd {name} folder" / "params {x}.ipynb"  # papermill formats paths
    odd.parent.mkdir()
    shutil.copyfile(TYPED, odd)
    assert inspect_parameters(odd) == typed
    assert inspect_parameters(str(odd)) == typed


def test_a_notebook_naming_no_kernel_is_read_as_python():
    params = inspect_parameters(notebook("n = 3", metadata={}))
    assert params["n"].type == "int"


def test_a_name_assigned_twice_takes_the_last_assignment():
    params = declare("n = 3\nlabel = 'x'\nn = 4.5")
    assert list(params) == ["label", "n"] and params["n"].type == "float"


def test_lines_papermill_cannot_parse_are_not_parameters():
    params = declare("a = b = 1\nc: np.ndarray = None\nd = 2")
    assert list(params) == ["d"]


def test_missing_notebook_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        inspect_parameters(tmp_path / "nope.ipynb")


def _one(annotation: str = "None", default: str = "None", help_text: str = "", name: str = "x") -> Parameter:
    return Parameter.from_inspection(
        {"name": name, "inferred_type_name": annotation, "default": default, "help": help_text}
    )


@pytest.mark.parametrize(
    "annotation, default, kind",
    [
        ("int", "3", "int"),
        ("float", "3", "float"),
        ("str", '"a"', "str"),
        ("bool", "True", "bool"),
        ("list", "[]", "list"),
        ("List[int]", "[1]", "list"),
        ("List[List[int]]", "[]", "list"),
        ("tuple", "(1, 2)", "list"),
        ("Tuple[int, int]", "(1, 2)", "list"),
        ("Sequence[str]", "[]", "list"),
        ("dict", "{}", "dict"),
        ("Dict[str, int]", "{}", "dict"),
        ("Mapping[str, float]", "{}", "dict"),
        ("Any", "3", "any"),
        ("object", "3", "any"),
        ("'int'", "3", "int"),
        ("Optional[int]", "None", "int"),
        ("Optional[List[int]]", "None", "list"),
        # an annotation dass does not know: the default's literal type, else any
        ("Path", '"a/b"', "str"),
        ("Path", "Path('a')", "any"),
        # no annotation ("None" from papermill): the default's literal type
        ("None", "3", "int"),
        ("None", "-3", "int"),
        ("None", "1_000", "int"),
        ("None", "1.5", "float"),
        ("None", "1e-3", "float"),
        ("None", "True", "bool"),
        ("None", "'text'", "str"),
        ("None", "[1, 'a']", "list"),
        ("None", "(1, 2)", "list"),
        ("None", "{'a': 1}", "dict"),
        ("None", "None", "any"),
        ("None", "{1, 2}", "any"),
        ("None", "b'x'", "any"),
        ("None", "np.pi", "any"),
        ("None", "os.environ['X']", "any"),
        ("None", "", "any"),
    ],
)
def test_type_from_annotation_or_literal(annotation, default, kind):
    assert _one(annotation, default).type == kind


@pytest.mark.parametrize(
    "default, expected, literal",
    [("3", 3, True), ("(1, 2)", (1, 2), True), ("None", None, True), ("np.pi", None, False)],
)
def test_default_is_the_literal_value(default, expected, literal):
    param = _one(default=default)
    assert param.default == expected and param.default_text == default


@pytest.mark.parametrize(
    "name, annotation, default, help_text, kind, help_out",
    [
        ("x", "str", '""', "dataset: the images", "dataset", "the images"),
        ("x", "None", '""', "Dataset: the images", "dataset", "the images"),
        ("x", "None", '""', "dataset to read", "dataset", "dataset to read"),
        ("x", "None", '""', "datasets: several", "dataset", "several"),
        ("x", "list", "[]", "datasets: several", "datasets", "several"),
        ("x", "List[str]", "[]", "dataset: several", "datasets", "several"),
        ("x", "None", "[]", "dataset: several", "datasets", "several"),
        ("x", "None", "None", "dataset: chosen by the user", "dataset", "chosen by the user"),
        ("dataset", "None", '""', "", "dataset", ""),
        ("datasets", "None", "[]", "", "datasets", ""),
        ("input_dataset", "None", '""', "the input", "dataset", "the input"),
        ("more_datasets", "list", "[]", "", "datasets", ""),
        ("input_dataset", "None", '"p-2026-001/sem-nanowires"', "", "dataset", ""),
        # not dataset parameters
        ("x", "None", '""', "datasetting: no", "str", "datasetting: no"),
        ("x", "None", '""', "the dataset to read", "str", "the dataset to read"),
        ("n_dataset", "int", "3", "", "int", ""),
        ("n", "int", "3", "dataset: a count", "int", "dataset: a count"),
        ("datasetx", "None", '""', "", "str", ""),
    ],
)
def test_dataset_parameters(name, annotation, default, help_text, kind, help_out):
    param = _one(annotation, default, help_text, name)
    assert (param.type, param.help) == (kind, help_out)


@pytest.mark.parametrize(
    "annotation, default, help_text, required",
    [
        ("int", "None", "", True),
        ("str", "None", "", True),
        ("None", "None", "dataset: a scan", True),
        ("List[int]", "None", "", True),
        ("Optional[int]", "None", "", False),
        ("None", "None", "", False),  # untyped None: any
        ("Any", "None", "", False),
        ("int", "3", "", False),
        ("int", "compute()", "", False),  # not a literal: the notebook computes it
        ("None", '""', "dataset: a scan", False),
    ],
)
def test_required_rule(annotation, default, help_text, required):
    assert _one(annotation, default, help_text).required is required


def test_parameter_to_json(typed):
    assert typed["n"].to_json() == {
        "name": "n",
        "type": "int",
        "default": 3,
        "help": "how many",
        "required": False,
    }
    assert typed["count"].to_json()["required"] is True
    assert typed["computed"].to_json()["default"] is None
    assert _one(default="(1, 2)").to_json()["default"] == [1, 2]
    assert _one(default="{1, 2}").to_json()["default"] is None  # a set is not JSON
    for param in typed.values():
        json.dumps(param.to_json(), allow_nan=False)


# ---------------------------------------------------------------------------- validation


def test_the_submission_must_be_an_object(typed):
    for value in ([1], "n=3", None, 3):
        with pytest.raises(ParameterError) as err:
            validate_parameters(value, typed, visible_dataset=visible)
        assert (err.value.field, err.value.status) == ("parameters", 422)
        assert str(err.value) == (
            "parameters must be an object mapping parameter names to values, "
            f"got {'null' if value is None else type(value).__name__}"
        )


def test_unknown_parameter_names_what_the_notebook_takes():
    with pytest.raises(ParameterError) as err:
        validate_parameters({"n": 1, "colour": "red"}, declare(SMALL), visible_dataset=visible)
    assert str(err.value) == "unknown parameter 'colour'; this notebook takes: n, scale, label, input_dataset"
    assert (err.value.field, err.value.status) == ("colour", 422)


def test_several_unknown_parameters_are_named_together():
    with pytest.raises(ParameterError) as err:
        validate_parameters({"colour": "red", "size": 3}, declare(SMALL))
    assert str(err.value) == (
        "unknown parameters 'colour', 'size'; this notebook takes: n, scale, label, input_dataset"
    )
    assert err.value.field == "colour"


def test_values_not_given_keep_the_default(typed):
    values, ids = validate_parameters({"count": 1}, typed, visible_dataset=visible)
    assert values == {"count": 1}
    # the default dataset of reference_dataset is read by the job, so it is checked and listed
    assert ids == ["p-2025-900/sem-reference-public"]


def test_values_come_back_in_the_notebook_order(typed):
    values, _ = validate_parameters(
        {"mode": "slow", "count": 2, "n": 5}, typed, visible_dataset=visible
    )
    assert list(values) == ["n", "count", "mode"]


STRICT = [
    # type, accepted value, value returned
    ("int", 3, 3),
    ("int", -7, -7),
    ("int", 10**30, 10**30),
    ("float", 1.5, 1.5),
    ("float", 2, 2.0),
    ("float", -0.0, -0.0),
    ("str", "", ""),
    ("str", "abc", "abc"),
    ("str", "3", "3"),
    ("bool", True, True),
    ("bool", False, False),
    ("list", [], []),
    ("list", [1, "a", None, [2]], [1, "a", None, [2]]),
    ("list", (1, 2), [1, 2]),
    ("dict", {}, {}),
    ("dict", {"a": [1, {"b": None}]}, {"a": [1, {"b": None}]}),
    ("any", 3, 3),
    ("any", "x", "x"),
    ("any", None, None),
    ("any", [1, {"a": True}], [1, {"a": True}]),
    ("dataset", "p-2026-001/sem-nanowires", "p-2026-001/sem-nanowires"),
    ("datasets", [], []),
    ("datasets", ["p-2026-001/sem-nanowires"], ["p-2026-001/sem-nanowires"]),
]


def _typed_param(kind: str, default_text: str = "None", required: bool = False) -> dict[str, Parameter]:
    default = None if default_text == "None" else json.loads(default_text)
    return {"x": Parameter("x", kind, default, default_text, "", required)}


@pytest.mark.parametrize("kind, value, expected", STRICT)
def test_strict_values_accepted(kind, value, expected):
    values, _ = validate_parameters({"x": value}, _typed_param(kind), visible_dataset=visible)
    assert values == {"x": expected}
    assert type(values["x"]) is type(expected)


STRICT_REFUSED = [
    ("int", "abc", 'expected int, got str "abc"'),
    ("int", "3", 'expected int, got str "3"'),
    ("int", 3.0, "expected int, got float 3.0"),
    ("int", 3.5, "expected int, got float 3.5"),
    ("int", True, "expected int, got bool true"),
    ("int", [3], "expected int, got list [3]"),
    ("float", "1.5", 'expected float, got str "1.5"'),
    ("float", False, "expected float, got bool false"),
    ("float", 10**400, "expected float, got int " + "1" + "0" * 58 + "…"),
    ("str", 3, "expected str, got int 3"),
    ("str", ["a"], 'expected str, got list ["a"]'),
    ("bool", 1, "expected bool, got int 1"),
    ("bool", "true", 'expected bool, got str "true"'),
    ("list", "[1]", 'expected list, got str "[1]"'),
    ("list", {"a": 1}, 'expected list, got dict {"a": 1}'),
    ("dict", [1], "expected dict, got list [1]"),
    ("dict", "{}", 'expected dict, got str "{}"'),
    ("dataset", 3, 'expected a dataset id "<proposal>/<name>", got int 3'),
    ("dataset", "sem-nanowires", 'expected a dataset id "<proposal>/<name>", got str "sem-nanowires"'),
    ("dataset", "a/b/c", 'expected a dataset id "<proposal>/<name>", got str "a/b/c"'),
    ("dataset", "../etc", 'expected a dataset id "<proposal>/<name>", got str "../etc"'),
    ("dataset", "", 'expected a dataset id "<proposal>/<name>", got str ""'),
    ("dataset", ["a/b"], 'expected a dataset id "<proposal>/<name>", got list ["a/b"]'),
    ("datasets", "a/b", 'expected a list of dataset ids "<proposal>/<name>", got str "a/b"'),
    ("datasets", ["a/b", 3], 'expected a list of dataset ids "<proposal>/<name>", got list ["a/b", 3]'),
    ("datasets", [""], 'expected a list of dataset ids "<proposal>/<name>", got list [""]'),
]


@pytest.mark.parametrize("kind, value, message", STRICT_REFUSED)
def test_strict_values_refused(kind, value, message):
    declared = {"n": Parameter("n", kind, 3 if kind == "int" else None, "3", "", False)}
    with pytest.raises(ParameterError) as err:
        validate_parameters({"n": value}, declared, visible_dataset=visible)
    assert str(err.value) == f"parameter 'n': {message}"
    assert (err.value.field, err.value.status) == ("n", 422)


def test_long_values_are_cut_in_the_message():
    declared = {"n": Parameter("n", "int", 3, "3", "", False)}
    with pytest.raises(ParameterError) as err:
        validate_parameters({"n": "y" * 200}, declared)
    assert str(err.value) == "parameter 'n': expected int, got str \"" + "y" * 58 + "…"


FORM = [
    ("int", "3", 3),
    ("int", " -3 ", -3),
    ("int", "+12", 12),
    ("float", "1.5", 1.5),
    ("float", "3", 3.0),
    ("float", "-2e3", -2000.0),
    ("float", ".5", 0.5),
    ("bool", "true", True),
    ("bool", "False", False),
    ("bool", "on", True),
    ("bool", "off", False),
    ("bool", "1", True),
    ("bool", "0", False),
    ("bool", "yes", True),
    ("bool", "no", False),
    ("list", "[1, 2]", [1, 2]),
    ("list", '["a"]', ["a"]),
    ("dict", '{"a": 1}', {"a": 1}),
    ("any", "3", 3),
    ("any", '{"a": [1]}', {"a": [1]}),
    ("any", '"quoted"', "quoted"),
    ("any", "plain text", "plain text"),
    ("str", "3", "3"),
    ("str", "", ""),
    ("dataset", "p-2026-001/sem-nanowires", "p-2026-001/sem-nanowires"),
    ("datasets", "p-2026-001/sem-nanowires, p-2026-001/sem-particles",
     ["p-2026-001/sem-nanowires", "p-2026-001/sem-particles"]),
    ("datasets", '["p-2026-001/sem-nanowires"]', ["p-2026-001/sem-nanowires"]),
    # values that are not text are taken as they are
    ("int", 4, 4),
    ("bool", True, True),
]


@pytest.mark.parametrize("kind, text, expected", FORM)
def test_form_text_is_converted(kind, text, expected):
    values, _ = validate_parameters(
        {"x": text}, _typed_param(kind), visible_dataset=visible, coerce_strings=True
    )
    assert values == {"x": expected}
    assert type(values["x"]) is type(expected)


FORM_REFUSED = [
    ("int", "abc", 'expected int, got str "abc"'),
    ("int", "1.5", 'expected int, got str "1.5"'),
    ("int", "1e3", 'expected int, got str "1e3"'),
    ("int", "1_000", 'expected int, got str "1_000"'),
    ("float", "nan", 'expected float, got str "nan"'),
    ("float", "inf", 'expected float, got str "inf"'),
    ("float", "1,5", 'expected float, got str "1,5"'),
    ("float", "1e400", 'expected float, got str "1e400"'),
    ("bool", "maybe", 'expected bool, got str "maybe"'),
    ("list", "[1,", 'expected list, got str "[1,"'),
    ("list", '{"a": 1}', 'expected list, got dict {"a": 1}'),
    ("dict", "[1]", "expected dict, got list [1]"),
    ("dict", "{NaN: 1}", 'expected dict, got str "{NaN: 1}"'),
    (
        "datasets",
        "p1/a, nope",
        'expected a list of dataset ids "<proposal>/<name>", got list ["p1/a", "nope"]',
    ),
]


@pytest.mark.parametrize("kind, text, message", FORM_REFUSED)
def test_form_text_refused(kind, text, message):
    with pytest.raises(ParameterError) as err:
        validate_parameters({"x": text}, _typed_param(kind), visible_dataset=visible, coerce_strings=True)
    assert str(err.value) == f"parameter 'x': {message}"
    assert err.value.status == 422


@pytest.mark.parametrize("kind", ["int", "float", "bool", "list", "dict", "any", "dataset", "datasets"])
def test_an_empty_form_field_keeps_the_default(kind):
    declared = _typed_param(kind, default_text='"p-2026-001/sem-nanowires"' if kind == "dataset" else "None")
    values, ids = validate_parameters({"x": ""}, declared, visible_dataset=visible, coerce_strings=True)
    assert values == {}
    assert ids == (["p-2026-001/sem-nanowires"] if kind == "dataset" else [])


def test_an_empty_form_field_of_a_required_parameter_is_missing():
    with pytest.raises(ParameterError) as err:
        validate_parameters({"x": ""}, _typed_param("int", required=True), coerce_strings=True)
    assert str(err.value) == "parameter 'x' is required (expected int); the notebook has no default for it"


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("int", "int"),
        ("str", "str"),
        ("list", "list"),
        ("dataset", 'a dataset id "<proposal>/<name>"'),
        ("datasets", 'a list of dataset ids "<proposal>/<name>"'),
    ],
)
def test_a_required_parameter_must_be_given(kind, expected):
    declared = _typed_param(kind, required=True)
    for submission in ({}, {"x": None}):
        with pytest.raises(ParameterError) as err:
            validate_parameters(submission, declared, visible_dataset=visible)
        assert str(err.value) == (
            f"parameter 'x' is required (expected {expected}); the notebook has no default for it"
        )
        assert (err.value.field, err.value.status) == ("x", 422)


def test_required_in_the_typed_notebook(typed):
    with pytest.raises(ParameterError, match=r"^parameter 'count' is required \(expected int\)"):
        validate_parameters({"n": 4}, typed, visible_dataset=visible)


def test_null_is_the_default_of_an_optional_parameter(typed):
    values, _ = validate_parameters(
        {"count": 1, "threshold": None, "anything": None}, typed, visible_dataset=visible
    )
    assert values == {"count": 1, "threshold": None, "anything": None}
    with pytest.raises(ParameterError) as err:
        validate_parameters({"count": 1, "n": None}, typed, visible_dataset=visible)
    assert str(err.value) == "parameter 'n': expected int, got null"


# ---------------------------------------------------------------------------- datasets


def test_dataset_ids_are_checked_and_returned(typed):
    values, ids = validate_parameters(
        {
            "count": 1,
            "input_dataset": "p-2026-001/sem-nanowires",
            "extra_datasets": ["p-2026-001/sem-particles", "p-2026-001/sem-nanowires"],
        },
        typed,
        visible_dataset=visible,
    )
    assert values["input_dataset"] == "p-2026-001/sem-nanowires"
    assert ids == [
        "p-2026-001/sem-nanowires",
        "p-2025-900/sem-reference-public",  # the default of reference_dataset
        "p-2026-001/sem-particles",
    ]


def test_a_dataset_the_user_may_not_use_is_forbidden():
    calls = []

    def spy(dataset_id):
        calls.append(dataset_id)
        return False

    with pytest.raises(ParameterError) as err:
        validate_parameters({"input_dataset": "p-2026-002/x"}, declare(SMALL), visible_dataset=spy)
    assert str(err.value) == (
        "parameter 'input_dataset': dataset 'p-2026-002/x' does not exist or you may not use it"
    )
    assert (err.value.field, err.value.status) == ("input_dataset", 403)
    assert calls == ["p-2026-002/x"]


def test_without_visible_dataset_no_dataset_may_be_used():
    with pytest.raises(ParameterError) as err:
        validate_parameters({"input_dataset": "p-2026-001/sem-nanowires"}, declare(SMALL))
    assert err.value.status == 403
    # but choosing none needs no check
    assert validate_parameters({"input_dataset": ""}, declare(SMALL)) == ({"input_dataset": ""}, [])


def test_type_errors_come_before_dataset_checks():
    with pytest.raises(ParameterError) as err:
        validate_parameters(
            {"input_dataset": "p-2026-002/x", "n": "three"}, declare(SMALL), visible_dataset=visible
        )
    assert err.value.status == 422 and err.value.field == "n"


def test_an_empty_dataset_is_none_chosen_only_when_the_default_is_empty(typed):
    values, ids = validate_parameters({"count": 1, "input_dataset": ""}, typed, visible_dataset=visible)
    assert values["input_dataset"] == "" and "" not in ids
    with pytest.raises(ParameterError) as err:
        validate_parameters({"count": 1, "reference_dataset": ""}, typed, visible_dataset=visible)
    assert str(err.value) == (
        "parameter 'reference_dataset': expected a dataset id \"<proposal>/<name>\", got str \"\""
    )


def test_a_forbidden_default_dataset_asks_for_another():
    declared = declare('input_dataset = "p-2026-002/stm-au111-fast"')
    with pytest.raises(ParameterError) as err:
        validate_parameters({}, declared, visible_dataset=visible)
    assert str(err.value) == (
        "parameter 'input_dataset': dataset 'p-2026-002/stm-au111-fast' does not exist or you "
        "may not use it (the notebook's default; choose another)"
    )
    assert err.value.status == 403
    values, ids = validate_parameters(
        {"input_dataset": "p-2026-001/sem-nanowires"}, declared, visible_dataset=visible
    )
    assert ids == ["p-2026-001/sem-nanowires"]


def test_a_default_that_is_not_a_dataset_id_must_be_replaced():
    declared = declare('input_dataset = "sem-nanowires"')
    with pytest.raises(ParameterError) as err:
        validate_parameters({}, declared, visible_dataset=visible)
    assert str(err.value) == (
        "parameter 'input_dataset': the notebook's default \"sem-nanowires\" is not a dataset id "
        '"<proposal>/<name>"; give one'
    )
    assert err.value.status == 422
    assert validate_parameters(
        {"input_dataset": "p-2026-001/sem-particles"}, declared, visible_dataset=visible
    ) == ({"input_dataset": "p-2026-001/sem-particles"}, ["p-2026-001/sem-particles"])


def test_each_dataset_is_checked_once():
    calls = []

    def spy(dataset_id):
        calls.append(dataset_id)
        return True

    declared = declare('a_dataset = ""\nb_dataset = ""\nmore_datasets = []')
    _, ids = validate_parameters(
        {"a_dataset": "p/x", "b_dataset": "p/x", "more_datasets": ["p/y", "p/x", "p/y"]},
        declared,
        visible_dataset=spy,
    )
    assert ids == calls == ["p/x", "p/y"]


# ---------------------------------------------------------------------------- JSON and size


@pytest.mark.parametrize(
    "value, message",
    [
        ({1, 2}, "expected a JSON value (null, true/false, number, text, list or object), got set"),
        (b"x", "expected a JSON value (null, true/false, number, text, list or object), got bytes"),
        (object(), "expected a JSON value (null, true/false, number, text, list or object), got object"),
        ([1, {2}], "expected a JSON value (null, true/false, number, text, list or object), got set"),
        (math.nan, "expected a finite number, got float nan"),
        ([math.inf], "expected a finite number, got float inf"),
        ({1: "a"}, "object keys must be text, got int key 1"),
        (10**4000, "expected a number, got an int of more than 3000 digits"),
    ],
)
def test_values_must_be_plain_json(value, message):
    with pytest.raises(ParameterError) as err:
        validate_parameters({"x": value}, _typed_param("any"))
    assert str(err.value) == f"parameter 'x': {message}"
    assert (err.value.field, err.value.status) == ("x", 422)


def test_deeply_nested_values_are_refused():
    value: list = []
    for _ in range(200):
        value = [value]
    with pytest.raises(ParameterError, match="nested more than 100 levels deep"):
        validate_parameters({"x": value}, _typed_param("any"))


@pytest.mark.parametrize(
    "kind, value, length",
    [
        ("str", "x" * (MAX_TEXT_CHARS + 1), MAX_TEXT_CHARS + 1),
        ("list", ["ok", "y" * 12_000], 12_000),
        ("dict", {"k" * 10_500: 1}, 10_500),
        ("any", {"a": ["z" * 20_000]}, 20_000),
    ],
)
def test_long_text_is_refused(kind, value, length):
    with pytest.raises(ParameterError) as err:
        validate_parameters({"x": value}, _typed_param(kind))
    assert str(err.value) == (
        f"parameter 'x': text of {length} characters, more than the {MAX_TEXT_CHARS} allowed"
    )
    assert err.value.status == 422


def test_text_of_the_maximum_length_is_accepted():
    text = "x" * MAX_TEXT_CHARS
    assert validate_parameters({"x": text}, _typed_param("str")) == ({"x": text}, [])


def test_long_form_json_text_is_refused_before_parsing():
    text = json.dumps(["a"] * 5_000)  # 25,000 characters of text
    with pytest.raises(ParameterError, match=r"^parameter 'x': text of 25000 characters"):
        validate_parameters({"x": text}, _typed_param("list"), coerce_strings=True)


def test_large_values_are_refused():
    value = ["x" * 1000] * 101
    with pytest.raises(ParameterError) as err:
        validate_parameters({"x": value}, _typed_param("list"))
    size = len(json.dumps(value))
    assert size > MAX_VALUE_CHARS
    assert str(err.value) == (
        f"parameter 'x': value of {size} characters as JSON, more than the {MAX_VALUE_CHARS} allowed"
    )


def test_parameter_error_is_a_value_error_with_a_json_body():
    err = ParameterError("parameter 'n': expected int, got str \"abc\"", field="n")
    assert isinstance(err, ValueError)
    assert (err.field, err.status) == ("n", 422)
    assert err.to_json() == {
        "status": 422,
        "message": "parameter 'n': expected int, got str \"abc\"",
        "field": "n",
    }
    assert ParameterError("no", field="d", status=403).to_json()["status"] == 403


# ---------------------------------------------------------------------------- the form


def test_form_fields_of_the_typed_notebook(typed):
    fields = {f["name"]: f for f in form_fields(typed)}
    assert list(fields) == list(typed)
    for field in fields.values():
        assert set(field) == {"name", "type", "input", "step", "value", "help", "required"}
        json.dumps(field, allow_nan=False)
    expected = {
        "n": ("int", "number", 1, 3),
        "scale": ("float", "number", "any", 1.5),
        "label": ("str", "text", None, "run"),
        "verbose": ("bool", "checkbox", None, False),
        "tags": ("list", "textarea", None, '["a", "b"]'),
        "options": ("dict", "textarea", None, '{"k": 1}'),
        "anything": ("any", "textarea", None, ""),
        "computed": ("any", "textarea", None, ""),
        "count": ("int", "number", 1, None),
        "ratio": ("float", "number", "any", 2.0),
        "values": ("list", "textarea", None, "[1, 2]"),
        "mapping": ("dict", "textarea", None, "{}"),
        "threshold": ("float", "number", "any", None),
        "mode": ("str", "text", None, "fast"),
        "input_dataset": ("dataset", "select-dataset", None, ""),
        "reference_dataset": ("dataset", "select-dataset", None, "p-2025-900/sem-reference-public"),
        "extra_datasets": ("datasets", "select-dataset", None, []),
    }
    for name, (kind, input_, step, value) in expected.items():
        field = fields[name]
        got = (field["type"], field["input"], field["step"], field["value"])
        assert got == (kind, input_, step, value), name
        assert type(field["value"]) is type(value), name
    assert fields["n"]["help"] == "how many"
    assert fields["input_dataset"]["help"] == "the images to analyse"
    assert fields["count"]["required"] is True and fields["n"]["required"] is False


def test_form_values_submitted_back_keep_the_defaults(typed):
    """What the form shows, submitted unchanged as text, gives the notebook's defaults."""
    submitted = {}
    for field in form_fields(typed):
        value = field["value"]
        if field["type"] == "datasets":
            submitted[field["name"]] = ", ".join(value)
        elif isinstance(value, bool):
            submitted[field["name"]] = "true" if value else "false"
        else:
            submitted[field["name"]] = "" if value is None else str(value)
    submitted["count"] = "7"
    values, ids = validate_parameters(submitted, typed, visible_dataset=visible, coerce_strings=True)
    for name, value in values.items():
        if name != "count":
            assert value == typed[name].default, name
    assert values["count"] == 7
    assert ids == ["p-2025-900/sem-reference-public"]


def test_form_fields_of_a_notebook_without_parameters():
    assert form_fields(inspect_parameters(NONE)) == []


# ---------------------------------------------------------------------------- end to end


def test_validated_values_reach_the_notebook(tmp_path, typed):
    """papermill injects the checked values; the notebook sees them with their types."""
    papermill = pytest.importorskip("papermill")
    pytest.importorskip("ipykernel", reason="the notebook needs a Python kernel")
    values, _ = validate_parameters(
        {
            "n": "5",
            "ratio": "3",
            "verbose": "on",
            "tags": '["x"]',
            "count": "2",
            "input_dataset": "p-2026-001/sem-nanowires",
            "extra_datasets": "p-2026-001/sem-particles",
        },
        typed,
        visible_dataset=visible,
        coerce_strings=True,
    )
    nb = papermill.execute_notebook(
        str(TYPED), str(tmp_path / "out.ipynb"), parameters=values, kernel_name="python3",
        progress_bar=False, cwd=str(tmp_path),
    )
    printed = json.loads(nb.cells[-1].outputs[0]["text"])
    assert printed["n"] == 5 and printed["ratio"] == 3.0 and isinstance(printed["ratio"], float)
    assert printed["verbose"] is True and printed["tags"] == ["x"] and printed["count"] == 2
    assert printed["input_dataset"] == "p-2026-001/sem-nanowires"
    assert printed["extra_datasets"] == ["p-2026-001/sem-particles"]
    assert printed["computed"] == 1024 and printed["scale"] == 1.5  # defaults kept
