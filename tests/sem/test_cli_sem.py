"""`dass sem ...` in real subprocesses: train + register, models list/default, classify, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fsspec
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")

from dass.sem.synthetic import write_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _dass(*args: str, config: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dass"]
    if config is not None:
        cmd += ["--config", str(config)]
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(REPO))
    env.pop("DASS_CONFIG", None)
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("semcli")
    data = tmp / "data"
    write_dataset(fsspec.filesystem("file"), str(data), per_class=3, size=(48, 48), seed=2)
    for extra in ("Fibres", "Films_Coated_Surface", "MEMS_devices_and_electrodes", "Particles",
                  "Patterned_surface", "Porous_Sponge", "Powder"):
        fsspec.filesystem("file").rm(str(data / extra), recursive=True)
    config = tmp / "dass_config.py"
    config.write_text(f"c.Storage.url = 'file://{tmp}/repo'\n")
    (tmp / "repo").mkdir()
    return tmp, data, config


def test_train_register_list_classify(workspace):
    tmp, data, config = workspace
    out = tmp / "run"
    proc = _dass("sem", "train", str(data), "--architecture", "mobilenet_v3_small", "--epochs", "1",
                 "--input-size", "32", "--batch-size", "4", "--out", str(out), "--register", "cli-model",
                 "--default", config=config)
    assert proc.returncode == 0, proc.stderr
    assert "validation accuracy" in proc.stdout and "registered cli-model (default)" in proc.stdout
    assert "training" in proc.stderr and "100%" in proc.stderr  # the tqdm bar
    report = json.loads((out / "report.json").read_text())
    assert f"validation accuracy {report['metrics']['accuracy']:.3f}" in proc.stdout
    assert (out / "model.pt").exists() and (out / "confusion_matrix.png").exists()
    assert (tmp / "repo" / "models" / "cli-model" / "README.md").exists()

    proc = _dass("sem", "models", "register", str(out / "model.pt"), "--name", "second", config=config)
    assert proc.returncode == 0, proc.stderr
    proc = _dass("sem", "models", "list", config=config)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("* cli-model") and "SYNTHETIC" in lines[0]
    assert lines[1].startswith("  second")
    proc = _dass("sem", "models", "default", "second", config=config)
    assert proc.returncode == 0 and "default SEM model: second" in proc.stdout
    listed = json.loads(_dass("sem", "models", "list", "--json", config=config).stdout)
    assert [m["name"] for m in listed if m["default"]] == ["second"]

    good = data / "Tips" / "0.png"
    bad = tmp / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    proc = _dass("sem", "classify", "--json", str(good), str(bad), config=config)
    assert proc.returncode == 1, proc.stderr  # one file could not be read
    answer = json.loads(proc.stdout)
    assert answer["model"] == "second" and answer["synthetic"] is True
    ok, err = answer["results"]
    assert ok["status"] == "ok" and sum(s["score"] for s in ok["scores"]) == pytest.approx(1.0, abs=1e-5)
    assert err["status"] == "error" and "bad.png" in err["reason"]

    # the same scores as the library gives
    from dass.sem.classify import Classifier

    direct = Classifier.load(out / "model.pt", device="cpu").classify([good])[0]
    assert ok["category"] == direct.category
    assert ok["certainty"] == pytest.approx(direct.certainty, abs=1e-5)

    proc = _dass("sem", "classify", "--checkpoint", str(out / "model.pt"), str(good), config=config)
    assert proc.returncode == 0 and proc.stdout.startswith(f"{good}\t{direct.category}\t")


@pytest.mark.parametrize("args, message", [
    (["sem", "train", "/nonexistent/sem-data", "--out", "/tmp/x"], "dass: error: dataset /nonexistent/sem-data is not a folder"),
    (["sem", "models", "default", "nope"], "dass: error: cannot make 'nope' the default: no such model"),
    (["sem", "classify", "x.png"], "dass: error: no default SEM model"),
    (["sem", "classify", "--checkpoint", "/nonexistent/m.pt", "x.png"], "dass: error: /nonexistent/m.pt: checkpoint file not found"),
])
def test_errors_are_one_line_with_exit_status_2(tmp_path, args, message):
    config = tmp_path / "dass_config.py"
    (tmp_path / "repo").mkdir()
    config.write_text(f"c.Storage.url = 'file://{tmp_path}/repo'\n")
    proc = _dass(*args, config=config)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_unknown_class_folder_error(tmp_path):
    (tmp_path / "Cats").mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "Cats" / "0.png")
    proc = _dass("sem", "train", str(tmp_path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "unknown class folder(s) Cats" in proc.stderr and "Traceback" not in proc.stderr


def test_dass_help_does_not_import_torch():
    code = ("import sys; from dass.cli import build_parser; p = build_parser(); "
            "p.parse_args(['sem', 'models', 'list']); print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
    assert _dass("sem", "--help").returncode == 0


def test_train_register_uses_the_configured_state_folder(workspace):
    """``c.Platform.state_dir`` alone decides where the model is registered (the repository's
    default place inside it), as for the hub and the service: no ./.dass appears."""
    tmp, data, _ = workspace
    work, etc = tmp / "work", tmp / "etc"
    work.mkdir()
    etc.mkdir()
    config = etc / "state_config.py"
    config.write_text("c.Platform.state_dir = '../state'\n")
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(REPO), DASS_STATE_DIR=str(tmp / "env-state"))
    env.pop("DASS_CONFIG", None)
    base = [sys.executable, "-m", "dass", "--config", str(config), "sem"]
    proc = subprocess.run([*base, "train", str(data), "--architecture", "mobilenet_v3_small", "--epochs", "1",
                           "--input-size", "32", "--batch-size", "4", "--out", str(tmp / "run-state"), "-q",
                           "--register", "state-model", "--default"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert (tmp / "state" / "repository" / "models" / "state-model" / "model.pt").exists()
    proc = subprocess.run([*base, "models", "list"], capture_output=True, text=True, timeout=120, env=env, cwd=work)
    assert proc.returncode == 0 and proc.stdout.startswith("* state-model"), proc.stderr
    assert not (work / ".dass").exists() and not (tmp / "env-state").exists()
