"""Headless jobs on the real platform: real service, real runner processes, real papermill."""

import json
import os
import signal

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.support import leftover_processes, wait_for

pytestmark = pytest.mark.integration

SEM = "sem/service/image_summary.ipynb"


def notebook(*sources, parameters: str | None = None) -> dict:
    cells = []
    if parameters is not None:
        cell = new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        cells.append(cell)
    cells += [new_code_cell(s) for s in sources]
    return json.loads(nbformat.writes(new_notebook(cells=cells)))


SLEEPER = notebook(
    "import os, time\ntime.sleep(seconds)",
    "open(os.path.join(os.environ['DASS_OUTPUT_DIR'], 'done.txt'), 'w').write('slept %s' % seconds)",
    parameters="seconds: float = 1.0",
)


def submit(p, user, body, expect=201):
    r = p.service("POST", "api/jobs", user, json=body)
    assert r.status_code == expect, r.text
    return r.json()


def wait_job(p, user, job_id, statuses=("COMPLETED", "FAILED", "STOPPED"), timeout=120):
    def done():
        job = p.service("GET", f"api/jobs/{job_id}", user).json()
        return job if job["status"] in statuses else None

    return wait_for(done, timeout, f"job {job_id} to reach {statuses}", interval=0.5)


def _run_service_notebook(p):
    body = {
        "notebook": SEM,
        "parameters": {"input_dataset": "p-2026-001/sem-nanowires", "max_images": 3, "thumbnail_px": 64},
        "idempotency_key": "summary-1",
    }
    job = submit(p, "alice", body)
    assert job["status"] == "QUEUED" and job["owner"] == "alice"
    again = submit(p, "alice", body, expect=200)
    assert again["id"] == job["id"]  # the same request with the same key never queues a second job
    other = submit(p, "alice", {"notebook": SEM, "idempotency_key": "summary-1"}, expect=422)
    assert "different request" in other["message"]  # the key reused for another request
    done = wait_job(p, "alice", job["id"])
    assert done["status"] == "COMPLETED", done
    assert done["parameters"]["max_images"] == 3
    outputs = {o["path"]: o for o in p.service("GET", f"api/jobs/{job['id']}/outputs", "alice").json()["outputs"]}
    for name in ("executed.ipynb", "executed.html", "job.log", "ro-crate-metadata.json", "output/summary.csv"):
        assert name in outputs, sorted(outputs)
    csv = p.service("GET", f"api/jobs/{job['id']}/outputs/output/summary.csv", "alice")
    assert csv.status_code == 200 and len(csv.text.strip().splitlines()) == 1 + 3
    executed = p.service("GET", f"api/jobs/{job['id']}/outputs/executed.ipynb", "alice").json()
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert "max_images = 3" in "".join(injected[0]["source"])
    crate = p.service("GET", f"api/jobs/{job['id']}/outputs/ro-crate-metadata.json", "alice").json()
    assert "@graph" in crate
    report = p.service("POST", f"api/jobs/{job['id']}/verify", "alice").json()
    assert report["ok"] and report["checked"] >= len(outputs) and report["problems"] == []
    page = p.service("GET", f"api/jobs/{job['id']}/notebook", "alice")
    assert page.status_code == 200 and "sandbox" in page.headers["Content-Security-Policy"]
    # results are a derived dataset: the owner and the input's proposal see it, others do not
    derived = done["derived_dataset"]
    assert derived == f"results/job-{job['id']}"
    assert p.service("GET", f"api/datasets/{derived}", "alice").status_code == 200
    assert p.service("GET", f"api/datasets/{derived}", "bob").status_code == 404
    return done


def test_service_notebook_job_completes_with_results_and_provenance(platform):
    done = _run_service_notebook(platform)
    log = platform.service("GET", f"api/jobs/{done['id']}/log", "alice")
    assert log.status_code == 200 and log.headers["X-Dass-Job-Status"] == "COMPLETED" and log.text


def test_s3_job_completes_with_results_and_provenance(s3_platform):
    _run_service_notebook(s3_platform)


@pytest.mark.parametrize("body, status, field", [
    ({"notebook": SEM, "parameters": {"max_images": "many"}}, 422, "max_images"),
    ({"notebook": SEM, "parameters": {"colour": "red"}}, 422, "colour"),
    ({"notebook": SEM, "parameters": {"input_dataset": "p-2026-002/stm-au111-fast"}}, 403, "input_dataset"),
    ({"notebook": SEM, "datasets": ["p-2026-002/stm-au111-fast"]}, 403, "p-2026-002/stm-au111-fast"),
    ({"notebook": "sem/service/nope.ipynb"}, 422, "nope.ipynb"),
    ({"notebook": SEM, "stack": "xrd"}, 422, "xrd"),
    ({"notebook": SEM, "timeout": -1}, 422, "timeout"),
    ({"notebook": {"upload": "{not json", "name": "x.ipynb"}}, 422, "notebook"),
    ({"notebook": {"home": "../../etc/passwd.ipynb"}}, 403, "notebook.home"),
    ({"notebok": SEM}, 422, "notebok"),
])
def test_bad_submissions_are_refused_and_nothing_is_queued(platform, body, status, field):
    before = platform.service("GET", "api/jobs", "alice").json()["total"]
    r = platform.service("POST", "api/jobs", "alice", json=body)
    assert r.status_code == status, r.text
    assert field in r.json()["message"], r.json()
    assert "Traceback" not in r.text
    assert platform.service("GET", "api/jobs", "alice").json()["total"] == before


def test_malformed_body_is_a_400(platform):
    r = platform.service("POST", "api/jobs", "alice", data="{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]


def test_cancel_a_running_job_kills_its_processes(platform):
    job = submit(platform, "alice", {"notebook": {"upload": SLEEPER, "name": "sleep.ipynb"},
                                     "parameters": {"seconds": 120}, "stack": "stm"})
    wait_job(platform, "alice", job["id"], statuses=("IN_PROGRESS",))
    workdir = platform.state / "jobs" / job["id"]
    wait_for(lambda: leftover_processes(workdir), 30, "the runner process")
    r = platform.service("POST", f"api/jobs/{job['id']}/cancel", "alice")
    assert r.status_code == 202 and r.json()["status"] in ("STOPPING", "STOPPED")
    done = wait_job(platform, "alice", job["id"], timeout=60)
    assert done["status"] == "STOPPED" and done["reason"] == "cancelled by alice"
    assert wait_for(lambda: not leftover_processes(workdir), 20, "the job's processes to end") is True
    r = platform.service("POST", f"api/jobs/{job['id']}/cancel", "alice")
    assert r.status_code == 409


def test_failures_say_why_in_one_line(platform):
    raiser = notebook("x = 1", "raise ValueError('bad value')", "print('never')")
    killer = notebook("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    jobs = {
        "raise": submit(platform, "alice", {"notebook": {"upload": raiser, "name": "raise.ipynb"}, "stack": "stm"}),
        "kernel": submit(platform, "alice", {"notebook": {"upload": killer, "name": "kill.ipynb"}, "stack": "stm"}),
        "timeout": submit(platform, "alice", {"notebook": {"upload": SLEEPER, "name": "sleep.ipynb"},
                                              "parameters": {"seconds": 60}, "stack": "stm", "timeout": 3}),
    }
    done = {k: wait_job(platform, "alice", j["id"], timeout=90) for k, j in jobs.items()}
    assert done["raise"]["status"] == "FAILED"
    assert "raised ValueError: bad value" in done["raise"]["reason"]
    assert done["kernel"]["status"] == "FAILED" and "kernel died" in done["kernel"]["reason"]
    assert done["timeout"]["status"] == "FAILED" and "timed out after 3 s" in done["timeout"]["reason"]
    for job in done.values():
        assert "\n" not in job["reason"]


def test_other_users_cannot_see_cancel_or_download_a_job(platform):
    job = submit(platform, "alice", {"notebook": {"upload": SLEEPER, "name": "sleep.ipynb"},
                                     "parameters": {"seconds": 0.1}, "stack": "stm"})
    wait_job(platform, "alice", job["id"])
    jid = job["id"]
    assert jid not in {j["id"] for j in platform.service("GET", "api/jobs", "bob").json()["jobs"]}
    for method, path in [("GET", f"api/jobs/{jid}"), ("GET", f"api/jobs/{jid}/log"),
                         ("GET", f"api/jobs/{jid}/outputs"), ("GET", f"api/jobs/{jid}/outputs/output/done.txt"),
                         ("GET", f"api/jobs/{jid}/notebook"), ("POST", f"api/jobs/{jid}/cancel"),
                         ("POST", f"api/jobs/{jid}/verify")]:
        r = platform.service(method, path, "bob")
        assert r.status_code == 404, (method, path, r.text)
    # the admin sees every job
    admin = platform.token_for("dass-admin")
    import requests
    r = requests.get(f"{platform.url}/services/dass/api/jobs/{jid}", headers={"Authorization": f"token {admin}"}, timeout=30)
    assert r.status_code == 200 and r.json()["owner"] == "alice"
    outputs = r.json()["outputs"]
    # alice downloads her own output
    r = platform.service("GET", f"api/jobs/{jid}/outputs/output/done.txt", "alice")
    assert r.status_code == 200 and r.text == "slept 0.1"
    # each of these accesses left exactly its audit row, the denied ones included
    r = requests.get(f"{platform.url}/services/dass/api/audit", params={"job": jid},
                     headers={"Authorization": f"token {admin}"}, timeout=30)
    rows = [(e["user"], e["action"], e["path"], e["allowed"], e["status"], e["bytes"])
            for e in reversed(r.json()["events"])]
    # the job's own writes through the gateway (with its token, on alice's behalf) come first
    writes = [("alice", "data.put", o["path"], True, 201, o["size"]) for o in outputs]
    assert [o["path"] for o in outputs][-1] == "dataset.json" and "output/done.txt" in {o["path"] for o in outputs}
    assert rows == [
        ("alice", "job.submit", None, True, 201, None),
        *writes,
        ("bob", "job.output", "output/done.txt", False, 404, 0),
        ("bob", "job.output", "executed.html", False, 404, None),
        ("alice", "job.output", "output/done.txt", True, 200, len("slept 0.1")),
    ]


def _service_pid(p):
    for proc in leftover_processes(p.state):
        if "dass.service" in " ".join(proc.cmdline()):
            return proc.pid
    return None


def test_service_killed_mid_job_and_restarted(platform):
    short = submit(platform, "alice", {"notebook": {"upload": SLEEPER, "name": "sleep.ipynb"},
                                       "parameters": {"seconds": 4}, "stack": "stm"})
    long = submit(platform, "alice", {"notebook": {"upload": SLEEPER, "name": "sleep.ipynb"},
                                      "parameters": {"seconds": 45}, "stack": "stm"})
    for job in (short, long):
        wait_job(platform, "alice", job["id"], statuses=("IN_PROGRESS",))
    old = _service_pid(platform)
    os.kill(old, signal.SIGKILL)
    # the hub restarts its managed service; the short job ends while it is away
    wait_for(lambda: (_service_pid(platform) not in (None, old)) and
             platform.service("GET", "api/health", "alice").ok, 90, "the service to be restarted")
    done_short = wait_job(platform, "alice", short["id"], timeout=60)
    done_long = wait_job(platform, "alice", long["id"], timeout=90)
    for done, seconds in ((done_short, 4), (done_long, 45)):
        assert done["status"] == "COMPLETED", done
        r = platform.service("GET", f"api/jobs/{done['id']}/outputs/output/done.txt", "alice")
        assert r.text == f"slept {float(seconds)}"
        log = platform.service("GET", f"api/jobs/{done['id']}/log", "alice").text
        assert log.count("cell 1/") == 1, log  # ran once, not twice


def _dass_cli(p, user, *args, timeout=180):
    import subprocess
    import sys

    env = dict(os.environ)
    for key in ("DASS_URL", "DASS_TOKEN", "JUPYTERHUB_API_TOKEN"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "dass", "jobs", "--url", f"{p.url}/services/dass/",
           "--token", p.token_for(user), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def test_cli_submit_wait_verify_download(platform, tmp_path):
    r = _dass_cli(platform, "alice", "submit", SEM, "-p", "input_dataset=p-2026-001/sem-nanowires",
                  "-p", "max_images=2", "--wait")
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.split()[0]
    assert "COMPLETED" in r.stderr and "cell 1/" in r.stderr  # progress, then the final status
    r = _dass_cli(platform, "alice", "verify", job_id)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1].startswith("ok:"), r.stdout
    r = _dass_cli(platform, "alice", "download", job_id, "output/summary.csv", "-o", str(tmp_path / "s.csv"))
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "s.csv").read_text().strip().splitlines()) == 3
    r = _dass_cli(platform, "alice", "list", "--status", "COMPLETED")
    assert job_id in r.stdout
    # bad input: a clear message naming the field, exit status 2, no traceback
    r = _dass_cli(platform, "alice", "submit", SEM, "-p", "max_images=many")
    assert r.returncode == 2 and "max_images" in r.stderr and "Traceback" not in r.stderr
    r = _dass_cli(platform, "bob", "show", job_id)
    assert r.returncode == 2 and "not found" in r.stderr


def test_submit_from_a_session_with_its_own_token(platform):
    r = platform.spawn("alice", {"stack": "sem", "size": "small", "datasets": ["p-2026-001/sem-nanowires"]})
    assert r.status_code in (201, 202), r.text
    try:
        home = platform.state / "homes" / "dass-alice"  # the home of alice's account
        (home / "analysis").mkdir(exist_ok=True)
        (home / "analysis" / "mine.ipynb").write_text(json.dumps(SLEEPER))
        code = (
            "import json, dass.jobs\n"
            "a = dass.jobs.submit('sem/service/image_summary.ipynb',\n"
            "                     parameters={'input_dataset': 'p-2026-001/sem-nanowires', 'max_images': 1})\n"
            "b = dass.jobs.submit({'home': 'analysis/mine.ipynb'}, parameters={'seconds': 0.2}, stack='stm')\n"
            "done = [dass.jobs.wait(j['id'], timeout=120) for j in (a, b)]\n"
            "print(json.dumps([[j['status'], j['owner'], j['notebook']] for j in done]))\n"
        )
        out = json.loads(platform.run_in_kernel("alice", code, timeout=180).strip().splitlines()[-1])
        assert out == [["COMPLETED", "alice", f"stack:{SEM}"], ["COMPLETED", "alice", "home:analysis/mine.ipynb"]]
    finally:
        platform.stop_server("alice")


def test_cli_sweep_runs_every_element_locally_with_its_own_parameter(platform, tmp_path):
    """A sweep on the local executor: each element an ordinary job run by papermill, with its
    own value; --wait shows the counts per status until all have ended."""
    upload = tmp_path / "sleep.ipynb"
    upload.write_text(json.dumps(SLEEPER))
    r = _dass_cli(platform, "alice", "submit", str(upload), "--stack", "stm", "--sweep", "seconds=0.1,0.2,0.3",
                  "--wait", timeout=300)
    assert r.returncode == 0, r.stderr
    sweep_id = r.stdout.split()[0]
    assert "3 jobs: 3 COMPLETED" in r.stderr, r.stderr  # the last progress line
    sweep = platform.service("GET", f"api/sweeps/{sweep_id}", "alice").json()
    assert sweep["finished"] and sweep["counts"]["COMPLETED"] == 3
    jobs = platform.service("GET", f"api/jobs?sweep={sweep_id}", "alice").json()["jobs"]
    for job, seconds in zip(jobs, (0.1, 0.2, 0.3)):
        assert job["parameters"] == {"seconds": seconds} and job["sweep_id"] == sweep_id
        r = platform.service("GET", f"api/jobs/{job['id']}/outputs/output/done.txt", "alice")
        assert r.text == f"slept {seconds}"
    r = _dass_cli(platform, "bob", "sweep", sweep_id)
    assert r.returncode == 2 and "not found" in r.stderr
