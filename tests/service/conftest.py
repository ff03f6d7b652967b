"""Fixtures of the dass service tests (the pieces live in :mod:`tests.service.service_support`)."""

from __future__ import annotations

import os

import pytest

from tests.service.service_support import FakeHub, LoopThread, RunningService, make_repository, start_service


@pytest.fixture(scope="session")
def loop_thread():
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture(scope="module")
def hub(loop_thread):
    h = FakeHub()
    loop_thread.run(h.start())
    yield h
    loop_thread.run(h.stop())


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> dict[str, str]:
    """The test repository on ``file://``, scanned into a SQLite catalogue."""
    return make_repository(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def service(loop_thread, hub, repository, tmp_path_factory) -> RunningService:
    svc = start_service(loop_thread, tmp_path_factory.mktemp("service"), hub.api_url, **repository)
    yield svc
    svc.stop()


@pytest.fixture
def python_env(tmp_path) -> dict[str, str]:
    """Environment for a ``python -m dass.service`` subprocess."""
    env = dict(os.environ)
    env.pop("DASS_CONFIG", None)
    env["DASS_STATE_DIR"] = str(tmp_path / "state")
    env["PYTHONUNBUFFERED"] = "1"
    return env
