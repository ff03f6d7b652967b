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


# -- one configuration: every command reads the state folder and the URL from the same file ----

ROOT = Path(__file__).resolve().parents[1]


def run_in(cwd: Path, *args, env_state: Path | None = None, timeout=300):
    """``python -m dass ARGS`` in ``cwd`` (dass and tests importable), $DASS_STATE_DIR set to
    a folder the config file must win over."""
    env = dict(os.environ)
    env.pop("DASS_CONFIG", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    if env_state is not None:
        env["DASS_STATE_DIR"] = str(env_state)
    return subprocess.run([sys.executable, "-m", "dass", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=cwd)


@pytest.fixture
def configured(tmp_path) -> tuple[Path, Path, Path]:
    """(config file, the state folder it names, a working folder): the state folder is given
    relative to the file, and the port is not the default one."""
    etc, work = tmp_path / "etc", tmp_path / "work"
    etc.mkdir()
    work.mkdir()
    cfg = etc / "dass_config.py"
    cfg.write_text(f"c.Platform.state_dir = '../state'\nc.Platform.port = {free_port()}\n")
    return cfg, tmp_path / "state", work


def test_repository_commands_use_the_configured_state_folder(configured, tmp_path):
    cfg, state, work = configured
    other = tmp_path / "env-state"
    r = run_in(work, "--config", str(cfg), "demo", "seed", "--no-sem-model", env_state=other)
    assert r.returncode == 0, r.stderr
    assert f"into file://{state}/repository" in r.stdout
    assert (state / "repository" / "p-2026-002" / "stm-au111-fast" / "dataset.json").exists()

    r = run_in(work, "--config", str(cfg), "catalog", "scan", env_state=other)
    assert r.returncode == 0, r.stderr
    assert (state / "catalog.sqlite").exists()

    r = run_in(work, "--config", str(cfg), "stm", "annotate", "p-2026-002/stm-au111-fast", env_state=other)
    assert r.returncode == 0, r.stdout + r.stderr
    meta = json.loads((state / "repository" / "p-2026-002" / "stm-au111-fast" / "dataset.json").read_text())
    assert meta["domain"]["stm_files"]

    r = run_in(work, "--config", str(cfg), "sem", "models", "list", env_state=other)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"no SEM models registered in {state}/repository/models"

    assert not (work / ".dass").exists() and not other.exists()  # nothing made anywhere else


def test_config_file_given_by_the_environment(configured):
    cfg, state, work = configured
    env_cfg = dict(os.environ, DASS_CONFIG=str(cfg), PYTHONPATH=str(ROOT))
    env_cfg.pop("DASS_STATE_DIR", None)
    r = subprocess.run([sys.executable, "-m", "dass", "sem", "models", "list"], capture_output=True, text=True,
                       env=env_cfg, cwd=work, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"{state}/repository/models" in r.stdout and not (work / ".dass").exists()


TOY = ("{'display_name': 'Toy', 'landing_notebook': 'toy/welcome.ipynb', 'default_size': 'small', "
       "'allowed_sizes': ['small'], 'cli': %r}")


def test_stacks_add_and_remove_command_groups(tmp_path):
    cfg = write_config(tmp_path, **{
        "c.StackRegistry.stacks": "{'toy': %s, 'stm': None}" % (TOY % "tests.service.toy_stack:register"),
        "c.Storage.url": repr(f"file://{tmp_path}/repo"),
    })
    r = run_in(ROOT, "--config", str(cfg), "--help")
    assert r.returncode == 0, r.stderr
    commands = r.stdout.split("{", 1)[1].split("}", 1)[0].split(",")
    assert "toy" in commands and "sem" in commands and "stm" not in commands
    r = run_in(ROOT, "--config", str(cfg), "toy")
    assert r.returncode == 0 and r.stdout == f"toy repository: file://{tmp_path}/repo\n", r.stderr
    # a stack's DassError: one line with the full text for the operator, exit status 2
    r = run_in(ROOT, "--config", str(cfg), "toy", "--fail")
    assert r.returncode == 2
    assert r.stderr == "dass: error: lock /srv/secret/toy.lock is held by pid 4242\n"


@pytest.mark.parametrize("spec, message", [
    ("tests.no_such_module:register", "stack 'toy': cli 'tests.no_such_module:register' cannot be imported"),
    ("tests.service.toy_stack", "stack 'toy': cli 'tests.service.toy_stack': write it as 'package.module:attribute'"),
])
def test_a_bad_cli_plugin_is_named(tmp_path, spec, message):
    cfg = write_config(tmp_path, **{"c.StackRegistry.stacks": "{'toy': %s}" % (TOY % spec)})
    r = run_in(ROOT, "--config", str(cfg), "--help")
    assert r.returncode == 2
    assert r.stderr.startswith(f"dass: error: {message}") and "Traceback" not in r.stderr


def _static_imports(path: Path) -> set[str]:
    """Absolute names of the dass modules a file imports (relative imports resolved)."""
    import ast

    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names.add(module)
            names |= {f"{module}.{a.name}" for a in node.names}
    return {n for n in names if n == "dass" or n.startswith("dass.")}


def test_no_import_circle_between_the_cli_and_the_stacks():
    stacks = ("dass.sem", "dass.kmap", "dass.stm")
    for path in sorted((ROOT / "dass" / "cli").glob("*.py")):
        bad = [n for n in _static_imports(path) if n.startswith(stacks)]
        assert not bad, f"{path.name} imports {bad}: stacks register their commands (cli: in stacks.yaml)"
    for stack in ("sem", "stm"):
        imported = _static_imports(ROOT / "dass" / stack / "cli.py")
        assert not [n for n in imported if n.startswith("dass.cli")], f"dass/{stack}/cli.py imports dass.cli"


def test_the_console_script_entry_point_resolves():
    """pyproject's ``dass = "dass.cli:main"`` names the package's main (no reinstall needed
    after dass/cli.py became the dass/cli/ package)."""
    import importlib
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attr = scripts["dass"].partition(":")
    main = getattr(importlib.import_module(module), attr)
    assert main(["config", "reference", "-o", os.devnull]) == 0
