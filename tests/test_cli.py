"""The `dass` command line answers bad input with a clear message and no traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dass.demo import seed
from tests.support import free_port


def dass(*args, config: Path | None = None, state: Path | None = None, timeout=120):
    env = dict(os.environ)
    env.pop("DASS_CONFIG", None)
    if state is not None:
        env["DASS_STATE_DIR"] = str(state)
    cmd = [sys.executable, "-m", "dass"]
    if config is not None:
        cmd += ["--config", str(config)]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=env, timeout=timeout)


def write_config(tmp_path: Path, **lines: str) -> Path:
    cfg = tmp_path / "dass_config.py"
    cfg.write_text("\n".join(f"{k} = {v}" for k, v in lines.items()) + "\n")
    return cfg


def test_scan_reports_missing_storage_root(tmp_path):
    cfg = write_config(tmp_path, **{"c.Storage.url": repr(f"file://{tmp_path}/no-such-repo")})
    r = dass("catalog", "scan", config=cfg, state=tmp_path / "state")
    assert r.returncode == 2
    assert "does not exist" in r.stderr and "c.Storage.url" in r.stderr
    assert "Traceback" not in r.stderr


def test_scan_reports_unreachable_s3_endpoint(tmp_path):
    endpoint = f"http://127.0.0.1:{free_port()}"
    cfg = write_config(tmp_path, **{
        "c.Storage.url": repr("s3://dass-repo/repository"),
        "c.Storage.options": repr({"endpoint_url": endpoint, "key": "k", "secret": "s"}),
    })
    r = dass("catalog", "scan", config=cfg, state=tmp_path / "state")
    assert r.returncode == 2
    assert "cannot reach the storage endpoint" in r.stderr and endpoint in r.stderr
    assert "Traceback" not in r.stderr


def test_scan_reports_malformed_metadata_and_indexes_the_rest(tmp_path):
    import fsspec

    repo = tmp_path / "repo"
    repo.mkdir()
    written = seed(fsspec.filesystem("file"), str(repo))
    bad = repo / "p-2026-001" / "sem-particles" / "dataset.json"
    meta = json.loads(bad.read_text())
    meta["access"]["embargo_until"] = "next spring"
    bad.write_text(json.dumps(meta))
    cfg = write_config(tmp_path, **{"c.Storage.url": repr(f"file://{repo}")})
    r = dass("catalog", "scan", config=cfg, state=tmp_path / "state")
    assert r.returncode == 1
    assert f"indexed {len(written) - 1}" in r.stdout.lower() or str(len(written) - 1) in r.stdout
    assert str(bad) in r.stderr and "access.embargo_until" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_config_file_is_named(tmp_path):
    r = dass("catalog", "scan", config=tmp_path / "nope.py")
    assert r.returncode == 2
    assert "nope.py does not exist" in r.stderr


def test_up_refuses_a_missing_repository_without_demo_data(tmp_path):
    cfg = write_config(tmp_path, **{
        "c.Storage.url": repr(f"file://{tmp_path}/no-such-repo"),
        "c.Platform.demo_data": "False",
        "c.Platform.port": str(free_port()),
    })
    r = dass("up", config=cfg, state=tmp_path / "state", timeout=60)
    assert r.returncode == 2
    assert "no-such-repo does not exist" in r.stderr
    assert "Traceback" not in r.stderr


def test_config_reference_documents_every_setting():
    r = dass("config", "reference")
    assert r.returncode == 0
    for name in ("c.Storage.url", "c.Catalog.db_url", "c.StackRegistry.stacks", "c.StackRegistry.sizes",
                 "c.Platform.demo_data", "c.Platform.proxy", "c.DassSpawnerMixin.max_datasets"):
        assert name in r.stdout
    assert "(undocumented)" not in r.stdout


@pytest.mark.parametrize("args", [["--help"], ["catalog", "--help"]])
def test_help(args):
    r = dass(*args)
    assert r.returncode == 0 and "usage: dass" in r.stdout
