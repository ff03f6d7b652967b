"""Each stack's service notebook runs as a job through the real dass service on a mounted demo
dataset (real hub, service, runner process, papermill kernel), and its results come back as a
derived dataset."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_jobs import submit, wait_job

pytestmark = pytest.mark.integration


def _outputs(p, user, job_id) -> dict[str, dict]:
    return {o["path"]: o for o in p.service("GET", f"api/jobs/{job_id}/outputs", user).json()["outputs"]}


def _completed(p, user, body, timeout=300) -> dict:
    job = submit(p, user, body)
    done = wait_job(p, user, job["id"], timeout=timeout)
    if done["status"] != "COMPLETED":
        log = p.service("GET", f"api/jobs/{job['id']}/log", user).text
        pytest.fail(f"job {done['status']}: {done.get('reason')}\n{log[-3000:]}")
    assert p.service("GET", f"api/datasets/{done['derived_dataset']}", user).status_code == 200
    return done


def test_stm_movie_job(platform):
    done = _completed(platform, "bob", {
        "notebook": "stm/service/fast_movie.ipynb",
        "parameters": {"input_dataset": "p-2026-002/stm-au111-fast", "frames": "first"},
    })
    outputs = _outputs(platform, "bob", done["id"])
    summary = platform.service("GET", f"api/jobs/{done['id']}/outputs/output/summary.json", "bob").json()
    (entry,) = summary["files"]
    assert f"output/{entry['movie']}" in outputs and f"output/{entry['metadata']}" in outputs
    assert entry["num_frames"] > 0 and summary["synthetic"] is True
    # alice is not in p-2026-002: she cannot run on its data, nor see bob's results
    r = platform.service("POST", "api/jobs", "alice", json={
        "notebook": "stm/service/fast_movie.ipynb",
        "parameters": {"input_dataset": "p-2026-002/stm-au111-fast"}})
    assert r.status_code == 403
    assert platform.service("GET", f"api/datasets/{done['derived_dataset']}", "alice").status_code == 404


def test_kmap_maps_job(platform):
    done = _completed(platform, "bob", {
        "notebook": "kmap/service/strain_tilt_maps.ipynb",
        "parameters": {"input_dataset": "p-2026-002/kmap-sige-island", "grid": [24, 24, 24]},
    })
    outputs = _outputs(platform, "bob", done["id"])
    for name in ("sige_island_maps.h5", "sige_island_maps.csv", "sige_island_strain.png",
                 "sige_island_summary.json"):
        assert f"output/{name}" in outputs, sorted(outputs)
    summary = json.loads(platform.service(
        "GET", f"api/jobs/{done['id']}/outputs/output/sige_island_summary.json", "bob").text)
    assert summary["synthetic"] is True and summary["ok_positions"] > 0
