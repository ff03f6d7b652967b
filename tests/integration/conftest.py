import pytest

from tests.support import MotoServer, PlatformProcess


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    """The real platform (hub + proxy + dass service + culler) with the demo repository."""
    p = PlatformProcess(tmp_path_factory.mktemp("platform"), name="platform")
    yield p
    p.stop()


@pytest.fixture(scope="session")
def moto():
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_platform(tmp_path_factory, moto):
    """The same platform with its repository in S3 (moto_server on loopback)."""
    moto.make_bucket("dass-repo")
    p = PlatformProcess(
        tmp_path_factory.mktemp("platform-s3"),
        storage_url="s3://dass-repo/repository",
        storage_options=moto.options,
        name="platform-s3",
    )
    yield p
    p.stop()
