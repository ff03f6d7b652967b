"""Parameter sweeps: expansion by value, then the manager against a real catalogue and database
(submission checks of every element, listing, counts, cancel, access, the scheduling of
elements); runs on Slurm are in test_slurm.py."""

from __future__ import annotations

import asyncio

import pytest

from dass.data.access import Identity
from dass.jobs.executor import Executor, Handle
from dass.jobs.manager import JobRequestError
from dass.jobs.params import ParameterError
from dass.jobs.sweep import expand_sweep, sweep_size
from tests.jobs.test_manager import ALICE, NANOWIRES, SEM, manager  # noqa: F401 - fixture

BOB = Identity("bob", frozenset({"p-2026-002"}))
ADMIN = Identity("root", frozenset(), admin=True)


# ---------------------------------------------------------------- expansion, by value


def test_the_cartesian_product_in_the_order_given_last_name_fastest():
    elements = expand_sweep({"n": 1}, {"threshold": [0.1, 0.2, 0.3], "method": ["a", "b"]}, None, max_elements=6)
    assert [(e.parameters["threshold"], e.parameters["method"]) for e in elements] == [
        (0.1, "a"), (0.1, "b"), (0.2, "a"), (0.2, "b"), (0.3, "a"), (0.3, "b")]
    assert [e.index for e in elements] == list(range(6))
    assert all(e.parameters["n"] == 1 for e in elements)
    assert elements[3].origin == {"n": "parameters", "threshold": "sweep.threshold[1]", "method": "sweep.method[1]"}
    assert elements[3].describe() == 'threshold=0.2, method="b"'


def test_parameter_sets_override_the_fixed_parameters_and_combine_with_the_sweep():
    elements = expand_sweep({"n": 1, "m": 0}, {"a": [1, 2]}, [{"n": 5}, {"m": 7}], max_elements=4)
    assert [e.parameters for e in elements] == [
        {"n": 5, "m": 0, "a": 1}, {"n": 5, "m": 0, "a": 2}, {"n": 1, "m": 7, "a": 1}, {"n": 1, "m": 7, "a": 2}]
    assert elements[2].origin["m"] == "parameter_sets[1]" and elements[2].origin["n"] == "parameters"
    assert sweep_size({"a": [1, 2]}, [{}, {}]) == 4


@pytest.mark.parametrize(
    "parameters, sweep, sets, field, message",
    [
        (None, None, None, "sweep", "a sweep needs 'sweep'"),
        (None, [0.1, 0.2], None, "sweep", "sweep must be an object of parameter names and lists"),
        (None, {}, None, "sweep", "sweep must be an object"),
        (None, {"threshold": 0.1}, None, "sweep.threshold", "must be a list of values to try"),
        (None, {"threshold": "0.1,0.2"}, None, "sweep.threshold", "not a string"),
        (None, {"threshold": []}, None, "sweep.threshold", "is empty: give at least one value"),
        (None, {"threshold": [1, 2, 1]}, None, "sweep.threshold", "lists 1 twice"),
        ({"threshold": 1}, {"threshold": [1, 2]}, None, "sweep.threshold", "both fixed (parameters) and swept"),
        (None, None, [], "parameter_sets", "not empty"),
        (None, None, {"a": 1}, "parameter_sets", "not an object"),
        (None, None, [{"a": 1}, 5], "parameter_sets[1]", "must be an object"),
        (None, None, [{"a": 1}, {"a": 1}], "parameter_sets[1]", "repeats an earlier parameter set"),
        (None, {"a": [1, 2]}, [{"a": 3}], "parameter_sets[0]", "both in parameter_sets[0] and swept"),
        (None, {"a": list(range(4)), "b": list(range(3))}, None, "sweep", "has 12 elements, more than the 10"),
        (None, None, [{"a": i} for i in range(11)], "parameter_sets", "has 11 elements, more than the 10"),
        ([1], {"a": [1]}, None, "parameters", "parameters must be an object"),
    ],
)
def test_a_malformed_sweep_says_which_field_and_what_to_fix(parameters, sweep, sets, field, message):
    with pytest.raises(ParameterError) as e:
        expand_sweep(parameters, sweep, sets, max_elements=10)
    assert e.value.status == 422 and e.value.field == field
    assert message in str(e.value)


# ---------------------------------------------------------------- the manager


def _sweep(**extra):
    return {"notebook": SEM, "parameters": {"input_dataset": NANOWIRES}, "sweep": {"max_images": [1, 2, 3]}, **extra}


def test_a_sweep_queues_one_ordinary_job_per_element(manager):
    sweep, created = manager.submit_sweep(ALICE, _sweep(parameter_sets=[{"thumbnail_px": 64}, {"thumbnail_px": 128}]))
    assert created and sweep["count"] == 6 and len(sweep["jobs"]) == 6
    assert sweep["counts"]["QUEUED"] == 6 and not sweep["finished"]
    assert sweep["sweep"] == {"max_images": [1, 2, 3]} and sweep["owner"] == "alice"
    jobs, total = manager.list_jobs(ALICE, sweep=sweep["id"])
    assert total == 6 and [j["id"] for j in jobs] == sweep["jobs"]
    assert [j["sweep_index"] for j in jobs] == list(range(6))
    assert [(j["parameters"]["thumbnail_px"], j["parameters"]["max_images"]) for j in jobs] == [
        (64, 1), (64, 2), (64, 3), (128, 1), (128, 2), (128, 3)]
    for job in jobs:  # each a job like any other: own folder, notebook, datasets
        assert job["sweep_id"] == sweep["id"] and job["status"] == "QUEUED" and job["datasets"] == [NANOWIRES]
        assert (manager.workdir(job["id"]) / "input.ipynb").exists()
        assert manager.get(ALICE, job["id"])["sweep_index"] == job["sweep_index"]
    single, _ = manager.submit(ALICE, {"notebook": SEM})
    assert single["sweep_id"] is None and manager.list_jobs(ALICE)[1] == 7


@pytest.mark.parametrize(
    "change, status, field, message",
    [
        ({"sweep": {"max_images": []}}, 422, "sweep.max_images", "is empty"),
        ({"sweep": {"max_images": 3}}, 422, "sweep.max_images", "must be a list of values"),
        ({"sweep": {"nope": [1, 2]}}, 422, "sweep.nope", "sweep.nope[0]: unknown parameter 'nope'; this notebook takes"),
        ({"sweep": {"max_images": [1, "many"]}}, 422, "sweep.max_images",
         "sweep.max_images[1]: parameter 'max_images': expected int"),
        ({"sweep": {"max_images": list(range(200))}}, 422, "sweep", "more than the 100 allowed"),
        ({"sweep": None, "parameter_sets": [{"max_images": 1}, {"thumbnail_px": "big"}]}, 422, "parameter_sets[1]",
         "sweep element 1 (thumbnail_px=\"big\"), from parameter_sets[1]: parameter 'thumbnail_px': expected int"),
        ({"sweep": {"input_dataset": [NANOWIRES, "p-2026-002/stm-movie"]}, "parameters": {}}, 403,
         "sweep.input_dataset", "sweep.input_dataset[1]: parameter 'input_dataset': dataset 'p-2026-002/stm-movie' "
                                "does not exist or you may not use it"),
        ({"parameters": {"input_dataset": "p-2026-002/stm-movie"}}, 403, "input_dataset",  # fixed: said once
         "parameter 'input_dataset': dataset 'p-2026-002/stm-movie' does not exist"),
        ({"size": "huge"}, 422, "size", "size"),
        ({"surprise": 1}, 422, "surprise", "unknown field(s) surprise"),
    ],
)
def test_a_bad_sweep_is_refused_whole_naming_the_field(manager, change, status, field, message):
    body = {k: v for k, v in {**_sweep(), **change}.items() if v is not None}
    with pytest.raises(JobRequestError) as e:
        manager.submit_sweep(ALICE, body)
    assert (e.value.status, e.value.field) == (status, field)
    assert message in e.value.message
    assert manager.list_jobs(ALICE)[1] == 0  # nothing queued


def test_a_job_request_with_a_sweep_says_where_sweeps_go(manager):
    with pytest.raises(JobRequestError) as e:
        manager.submit(ALICE, _sweep())
    assert e.value.status == 422 and "a sweep is sent to POST api/sweeps" in e.value.message


def test_the_most_elements_is_configurable(manager):
    manager.max_sweep_jobs = 2
    with pytest.raises(JobRequestError) as e:
        manager.submit_sweep(ALICE, _sweep())
    assert "the sweep has 3 elements, more than the 2 allowed (c.JobManager.max_sweep_jobs)" in e.value.message


def test_idempotency_key_returns_the_first_sweep(manager):
    first, created = manager.submit_sweep(ALICE, _sweep(idempotency_key="s1"))
    again, created_again = manager.submit_sweep(ALICE, _sweep(idempotency_key="s1"))
    assert created and not created_again and again["id"] == first["id"]
    with pytest.raises(JobRequestError) as e:
        manager.submit_sweep(ALICE, _sweep(idempotency_key="s1", timeout=60))
    assert e.value.status == 422 and first["id"] in e.value.message
    assert manager.list_jobs(ALICE)[1] == 3


def test_only_the_owner_and_admins_see_and_cancel_a_sweep(manager):
    sweep, _ = manager.submit_sweep(ALICE, _sweep())
    for call in (lambda: manager.get_sweep(BOB, sweep["id"]), lambda: manager.cancel_sweep(BOB, sweep["id"]),
                 lambda: manager.list_jobs(BOB, sweep=sweep["id"]), lambda: manager.get_sweep(ALICE, "nope")):
        with pytest.raises(JobRequestError) as e:
            call()
        assert e.value.status == 404 and "not found" in e.value.message
    with pytest.raises(JobRequestError):
        manager.cancel(BOB, sweep["jobs"][0])
    assert manager.get_sweep(ADMIN, sweep["id"])["count"] == 3
    assert manager.get_sweep(ALICE, sweep["id"])["counts"]["QUEUED"] == 3


def test_cancel_one_element_then_the_whole_sweep(manager):
    sweep, _ = manager.submit_sweep(ALICE, _sweep())
    manager.cancel(ALICE, sweep["jobs"][1])
    counts = manager.get_sweep(ALICE, sweep["id"])["counts"]
    assert counts["QUEUED"] == 2 and counts["STOPPED"] == 1
    done = manager.cancel_sweep(ALICE, sweep["id"])
    assert done["counts"]["STOPPED"] == 3 and done["finished"]
    assert {j["reason"] for j in manager.list_jobs(ALICE, sweep=sweep["id"])[0]} == {
        "cancelled by alice before it started"}
    with pytest.raises(JobRequestError) as e:
        manager.cancel_sweep(ALICE, sweep["id"])
    assert e.value.status == 409 and "no job left to cancel" in e.value.message


class RecordingExecutor(Executor):
    """Starts nothing; records how the manager handed it runs (a stand-in back end, by
    subclassing the interface as the house tests do)."""

    name = "recording"
    calls: list = []

    async def start(self, spec):
        self.calls.append(("start", spec.job_id))
        return Handle(spec.job_id, self.name, {"workdir": spec.cwd})

    async def start_sweep(self, specs):
        self.calls.append(("start_sweep", [s.sweep_index for s in specs]))
        return await super().start_sweep(specs)

    def status(self, handle):
        return None


class ArrayRecordingExecutor(RecordingExecutor):
    sweep_at_once = True


@pytest.mark.parametrize("executor, expected", [
    (RecordingExecutor, [("start_sweep", [0, 1])]),  # as many as may run now (max_concurrency 2)
    (ArrayRecordingExecutor, [("start_sweep", [0, 1, 2])]),  # the whole sweep at once
])
def test_the_scheduler_hands_a_sweeps_elements_to_the_executor_together(manager, executor, expected):
    manager.executor = executor(parent=manager)
    RecordingExecutor.calls = []
    sweep, _ = manager.submit_sweep(ALICE, _sweep())
    asyncio.run(manager.tick())
    assert RecordingExecutor.calls[:1] == expected
    specs_started = [c for c in RecordingExecutor.calls if c[0] == "start"]
    assert len(specs_started) == len(expected[0][1])  # the default start_sweep starts each
    counts = manager.get_sweep(ALICE, sweep["id"])["counts"]
    assert counts["IN_PROGRESS"] == len(expected[0][1])


def _required_notebook() -> dict:
    import json

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cell = new_code_cell("count: int = None\nn = 1")
    cell.metadata["tags"] = ["parameters"]
    return json.loads(nbformat.writes(new_notebook(cells=[cell])))


def test_a_parameter_set_that_lacks_a_required_parameter_is_named(manager):
    body = {"notebook": {"upload": _required_notebook(), "name": "req.ipynb"},
            "parameter_sets": [{"count": 1}, {"n": 2}]}
    with pytest.raises(JobRequestError) as e:
        manager.submit_sweep(ALICE, body)
    assert e.value.field == "parameter_sets[1]"
    assert e.value.message.startswith("sweep element 1 (n=2), from parameter_sets[1]: parameter 'count' is required")
    # missing in every element: said once, as for a job
    with pytest.raises(JobRequestError) as e:
        manager.submit_sweep(ALICE, {**body, "parameter_sets": None, "sweep": {"n": [1, 2]}})
    assert e.value.field == "count" and e.value.message.startswith("parameter 'count' is required")
