"""Property-based fuzzing of the service against its own OpenAPI description (schemathesis).

Every operation of ``api/openapi.json`` gets a bounded number of generated requests, valid and
invalid, sent to a real service (in-process, real HubOAuth against the small real hub of
``service_support``, a registered untrained SEM model, a job queue that never starts a job).
The checks: no answer is a server error, and every answer's status, content type, headers and
body are those the description documents. The corpus of hand-written hostile cases is
``test_bad_input.py``.

``DASS_FUZZ_EXAMPLES`` sets the examples per operation (default 15: about a minute on two
busy cores).
"""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extra (pip install -e .[test])")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dass.data.storage import Storage  # noqa: E402
from dass.service.app import load_openapi  # noqa: E402
from tests.sem_support import MODEL, write_untrained_checkpoint  # noqa: E402
from tests.service.service_support import make_repository, start_service  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EXAMPLES = int(os.environ.get("DASS_FUZZ_EXAMPLES", "15"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed(loop_thread, hub, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    urls = make_repository(tmp / "data")
    checkpoint = write_untrained_checkpoint(tmp / "model.pt")
    from dass.sem.registry import ModelRegistry

    ModelRegistry(Storage(url=urls["repo_url"])).register(str(checkpoint), MODEL, default=True)
    (tmp / "service").mkdir()
    extra = "\n".join([
        "c.JobManager.max_concurrency = 0",  # jobs are queued, never run
        f"c.JobManager.jobs_dir = {str(tmp / 'jobs')!r}",
        "c.SemClassifyService.device = 'cpu'",
        "c.SemClassifyService.max_request_bytes = 4 * 1024 * 1024",
    ])
    svc = start_service(loop_thread, tmp / "service", hub.api_url, extra_config=extra, **urls)
    yield svc
    svc.stop()


# the description as the service serves it (loaded at collection: schemathesis's lazy
# from_fixture loader does not work with this pytest)
schema = schemathesis.openapi.from_dict(
    load_openapi(), config=SchemathesisConfig.from_dict({"generation": {"mode": "all"}}))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_holds_under_generated_input(case, fuzzed):
    case.call_and_validate(
        base_url=fuzzed.url.rstrip("/"),
        headers={"Authorization": "token alice-token"},
        checks=CHECKS,
        timeout=60,
        allow_redirects=False,
    )
