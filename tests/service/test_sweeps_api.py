"""Parameter sweeps through the REST API (``api/sweeps…``, ``api/jobs?sweep=``) and the CLI,
against a real service and the small real hub, whose queue starts nothing (the runs of sweep
elements are tested on Slurm in tests/jobs/test_slurm.py and by the scheduler's tests)."""

from __future__ import annotations

import jsonschema
import pytest

from tests.service.service_support import make_repository, start_service
from tests.service.test_cli_jobs import dass_jobs
from tests.service.test_service_api import assert_error

SEM = "sem/service/image_summary.ipynb"
GRAINS = "p-2026-001/sem-grains"


@pytest.fixture(scope="module")
def idle(loop_thread, hub, tmp_path_factory):
    """A service whose queue never starts a job, at most 10 elements per sweep."""
    tmp = tmp_path_factory.mktemp("sweeps")
    urls = make_repository(tmp / "data")
    (tmp / "service").mkdir()
    extra = "\n".join([
        "c.JobManager.max_concurrency = 0",
        f"c.JobManager.jobs_dir = {str(tmp / 'jobs')!r}",
        "c.JobManager.max_sweep_jobs = 10",
    ])
    svc = start_service(loop_thread, tmp / "service", hub.api_url, extra_config=extra, **urls)
    yield svc
    svc.stop()


def _body(**extra):
    return {"notebook": SEM, "parameters": {"input_dataset": GRAINS}, "sweep": {"max_images": [1, 2, 3]}, **extra}


def _schema(svc, name):
    doc = svc.get("api/openapi.json").json()
    return jsonschema.Draft202012Validator({**doc["components"]["schemas"][name], "components": doc["components"]})


def test_post_a_sweep_then_follow_list_and_cancel_it(idle):
    r = idle.request("POST", "api/sweeps", "alice-token", json=_body(sweep={"max_images": [1, 2], "thumbnail_px": [64, 128]}))
    assert r.status_code == 201, r.text
    sweep = r.json()
    _schema(idle, "Sweep").validate(sweep)
    assert r.headers["Location"].endswith(f"api/sweeps/{sweep['id']}")
    assert sweep["count"] == 4 and sweep["counts"]["QUEUED"] == 4 and not sweep["finished"]
    assert idle.get(f"api/sweeps/{sweep['id']}", "alice-token").json() == sweep
    jobs = idle.get(f"api/jobs?sweep={sweep['id']}", "alice-token").json()
    assert jobs["total"] == 4 and [j["id"] for j in jobs["jobs"]] == sweep["jobs"]
    job_schema = _schema(idle, "Job")
    for i, job in enumerate(jobs["jobs"]):
        job_schema.validate(job)
        assert job["sweep_id"] == sweep["id"] and job["sweep_index"] == i
    assert [(j["parameters"]["max_images"], j["parameters"]["thumbnail_px"]) for j in jobs["jobs"]] == [
        (1, 64), (1, 128), (2, 64), (2, 128)]
    # one element, then the rest
    assert idle.request("POST", f"api/jobs/{sweep['jobs'][0]}/cancel", "alice-token").json()["status"] == "STOPPED"
    r = idle.request("POST", f"api/sweeps/{sweep['id']}/cancel", "alice-token")
    assert r.status_code == 200 and r.json()["counts"]["STOPPED"] == 4 and r.json()["finished"]
    assert_error(idle.request("POST", f"api/sweeps/{sweep['id']}/cancel", "alice-token"), 409, "no job left to cancel")


def test_another_users_sweep_answers_404(idle):
    sweep = idle.request("POST", "api/sweeps", "alice-token", json=_body()).json()
    for method, path in (("GET", f"api/sweeps/{sweep['id']}"), ("POST", f"api/sweeps/{sweep['id']}/cancel"),
                         ("GET", f"api/jobs?sweep={sweep['id']}"), ("GET", f"api/jobs/{sweep['jobs'][0]}")):
        assert_error(idle.request(method, path, "bob-token"), 404, "not found")
    assert idle.get(f"api/sweeps/{sweep['id']}", "carol-token").json()["count"] == 3  # an admin
    assert idle.get(f"api/sweeps/{sweep['id']}", "alice-token").json()["counts"]["QUEUED"] == 3


def test_list_the_callers_sweeps_newest_first_a_page_at_a_time(idle):
    before = idle.get("api/sweeps", "alice-token").json()["total"]
    first = idle.request("POST", "api/sweeps", "alice-token", json=_body()).json()
    second = idle.request("POST", "api/sweeps", "alice-token", json=_body(sweep={"max_images": [4, 5]})).json()
    idle.request("POST", f"api/jobs/{second['jobs'][0]}/cancel", "alice-token")
    page = idle.get("api/sweeps?limit=2", "alice-token").json()
    assert page["total"] == before + 2 and (page["limit"], page["offset"]) == (2, 0)
    assert [s["id"] for s in page["sweeps"]] == [second["id"], first["id"]]
    summary = _schema(idle, "SweepSummary")
    for listed, full in zip(page["sweeps"], (second, first)):
        summary.validate(listed)
        assert "jobs" not in listed  # listed by GET api/jobs?sweep=
        assert listed["sweep"] == full["sweep"] and listed["count"] == full["count"]
    assert page["sweeps"][0]["counts"]["STOPPED"] == 1 and page["sweeps"][0]["counts"]["QUEUED"] == 1
    assert page["sweeps"][1]["counts"]["QUEUED"] == 3 and not page["sweeps"][1]["finished"]
    assert [s["id"] for s in idle.get("api/sweeps?limit=1&offset=1", "alice-token").json()["sweeps"]] == [first["id"]]
    # another user sees none of them; an admin sees them all
    ids = {first["id"], second["id"]}
    assert not ids & {s["id"] for s in idle.get("api/sweeps?limit=500", "bob-token").json()["sweeps"]}
    assert ids <= {s["id"] for s in idle.get("api/sweeps?limit=500", "carol-token").json()["sweeps"]}


@pytest.mark.parametrize("query, words", [
    ("limit=0", ("query parameter limit must be an integer between 1 and 500",)),
    ("limit=many", ("query parameter limit must be an integer",)),
    ("offset=-1", ("query parameter offset must be an integer between 0",)),
    ("status=QUEUED", ("status",)),
])
def test_a_bad_sweep_listing_answers_400_saying_what_to_fix(idle, query, words):
    assert_error(idle.get(f"api/sweeps?{query}", "alice-token"), 400, *words)


def test_the_cli_lists_the_callers_sweeps(idle, tmp_path):
    sweep = idle.request("POST", "api/sweeps", "alice-token", json=_body(sweep={"max_images": [6, 7]})).json()
    cfg = tmp_path / "dass_config.py"
    cfg.write_text("")
    r = dass_jobs(cfg, "--url", idle.url, "--token", "alice-token", "sweeps")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"{sweep['id']}  2 jobs: 2 QUEUED  {sweep['notebook']}"
    r = dass_jobs(cfg, "--url", idle.url, "--token", "bob-token", "sweeps")
    assert r.returncode == 0 and sweep["id"] not in r.stdout, r.stderr


@pytest.mark.parametrize(
    "change, status, words",
    [
        ({"sweep": {"max_images": []}}, 422, ("sweep.max_images is empty",)),
        ({"sweep": {"max_images": 5}}, 422, ("sweep.max_images must be a list of values",)),
        ({"sweep": [1, 2]}, 422, ("sweep must be an object",)),
        ({"sweep": {"nope": [1]}}, 422, ("sweep.nope[0]: unknown parameter 'nope'", "this notebook takes")),
        ({"sweep": {"max_images": [1, "many"]}}, 422, ("sweep.max_images[1]", "expected int, got str")),
        ({"sweep": {"max_images": list(range(11))}}, 422, ("11 elements, more than the 10 allowed",
                                                           "c.JobManager.max_sweep_jobs")),
        ({"sweep": None, "parameter_sets": "max_images=1"}, 422, ("parameter_sets must be a non-empty list",)),
        ({"sweep": None}, 422, ("a sweep needs 'sweep'",)),
        ({"sweep": {"input_dataset": [GRAINS, "p-2026-002/stm-movie"]}, "parameters": {}}, 403,
         ("sweep.input_dataset[1]", "does not exist or you may not use it")),
        ({"sweep": {"max_images\x00": [1]}}, 400, ("contains a NUL",)),
        ({"parameters": {"input_dataset": "p-2026-002/stm-movie"}}, 403,  # fixed: said once, as for a job
         ("parameter 'input_dataset': dataset 'p-2026-002/stm-movie' does not exist",)),
    ],
)
def test_a_bad_sweep_answers_4xx_json_saying_what_to_fix(idle, change, status, words):
    body = {k: v for k, v in {**_body(), **change}.items() if v is not None}
    before = idle.get("api/jobs", "alice-token").json()["total"]
    assert_error(idle.request("POST", "api/sweeps", "alice-token", json=body), status, *words)
    assert idle.get("api/jobs", "alice-token").json()["total"] == before  # nothing queued


def test_a_sweep_posted_to_api_jobs_is_sent_on_to_api_sweeps(idle):
    assert_error(idle.request("POST", "api/jobs", "alice-token", json=_body()), 422, "POST api/sweeps")


def test_the_cli_submits_a_sweep_and_shows_its_progress(idle, tmp_path):
    cfg = tmp_path / "dass_config.py"
    cfg.write_text("")
    r = dass_jobs(cfg, "--url", idle.url, "--token", "alice-token", "submit", SEM, "-p", f"input_dataset={GRAINS}",
                  "--sweep", "max_images=1,2", "--sweep", 'thumbnail_px=64,128,256')
    assert r.returncode == 0, r.stderr
    sweep_id = r.stdout.split()[0]
    sweep = idle.get(f"api/sweeps/{sweep_id}", "alice-token").json()
    assert sweep["count"] == 6 and sweep["sweep"] == {"max_images": [1, 2], "thumbnail_px": [64, 128, 256]}
    r = dass_jobs(cfg, "--url", idle.url, "--token", "alice-token", "sweep", sweep_id)
    assert r.returncode == 0, r.stderr
    assert "6 jobs: 6 QUEUED" in r.stdout and sweep["jobs"][5] in r.stdout
    r = dass_jobs(cfg, "--url", idle.url, "--token", "alice-token", "cancel", "--sweep", sweep_id)
    assert r.returncode == 0 and "6 jobs: 6 STOPPED" in r.stdout, r.stderr


def test_the_cli_takes_parameter_sets_from_a_file(idle, tmp_path):
    import json

    cfg = tmp_path / "dass_config.py"
    cfg.write_text("")
    sets = tmp_path / "sets.json"
    sets.write_text(json.dumps([{"max_images": 1}, {"max_images": 2, "thumbnail_px": 64}]))
    r = dass_jobs(cfg, "--url", idle.url, "--token", "alice-token", "submit", SEM, "--param-sets", str(sets),
                  "--sweep", "input_dataset=p-2026-001/sem-grains")
    assert r.returncode == 0, r.stderr
    jobs = idle.get(f"api/jobs?sweep={r.stdout.split()[0]}", "alice-token").json()["jobs"]
    assert [j["parameters"] for j in jobs] == [
        {"input_dataset": GRAINS, "max_images": 1}, {"input_dataset": GRAINS, "max_images": 2, "thumbnail_px": 64}]
    sets.write_text("{not json")
    r = dass_jobs(cfg, "--url", idle.url, "--token", "alice-token", "submit", SEM, "--param-sets", str(sets))
    assert r.returncode == 2 and r.stderr.startswith(f"dass: error: --param-sets {sets}: "), r.stderr


@pytest.mark.parametrize("args, words", [
    (["--sweep", "max_images"], "--sweep 'max_images': write NAME=VALUE,VALUE,..."),
    (["--sweep", "max_images=1,x"], "sweep.max_images[1]: parameter 'max_images': expected int, got str"),
    (["--sweep", "max_images=1", "--sweep", "max_images=2"], "--sweep max_images is given twice"),
    (["--sweep", "nope=1,2"], "unknown parameter 'nope'"),
])
def test_the_cli_says_what_is_wrong_with_a_sweep(idle, tmp_path, args, words):
    cfg = tmp_path / "dass_config.py"
    cfg.write_text("")
    r = dass_jobs(cfg, "--url", idle.url, "--token", "alice-token", "submit", SEM, *args)
    assert r.returncode == 2 and r.stderr.startswith("dass: error: ") and words in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
