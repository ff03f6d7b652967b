import pytest

from tests.support import CHROMIUM, CHROMIUM_ARGS, MotoServer, PlatformProcess, browser_missing


#: a stack only the test group ``dass-testers`` sees, whose environment a test creates (or not)
BROKEN_STACK = "broken"
TEST_GROUP = "dass-testers"


def broken_stack_config(state) -> str:
    stack = {
        "display_name": "A stack whose environment is broken (tests)",
        "landing_notebook": "stm/welcome.ipynb",
        "default_size": "small",
        "allowed_sizes": ["small"],
        "groups": [TEST_GROUP],
        "environment": str(state / "broken-env"),
    }
    return f"c.StackRegistry.stacks = {{{BROKEN_STACK!r}: {stack!r}}}"


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    """The real platform (hub + proxy + dass service + culler) with the demo repository."""
    state = tmp_path_factory.mktemp("platform")
    p = PlatformProcess(state, name="platform", extra_config=broken_stack_config(state))
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


@pytest.fixture
def browser():
    """Headless Debian Chromium driven by Playwright (skips with the reason when missing)."""
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
