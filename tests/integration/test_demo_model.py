"""`make up` gives a working SEM classifier: the demo model, trained on SYNTHETIC images at the
first start on a machine (then cached), registered as the repository's default, and the service
classifies the demo's images with it and says what it was trained on."""

from __future__ import annotations

import pytest

from tests.support import PlatformProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo_platform(tmp_path_factory):
    pytest.importorskip("torch", reason="the demo classifier needs torch")
    p = PlatformProcess(tmp_path_factory.mktemp("platform-sem"), name="platform-sem", sem_model=True)
    yield p
    p.stop()


def test_the_demo_classifier_is_registered_and_says_it_is_synthetic(demo_platform):
    p = demo_platform
    assert "SEM classifier: demo-synthetic (trained on SYNTHETIC images" in p.log_path.read_text()
    model = p.service("GET", "api/classify/model", "alice").json()
    assert model["name"] == "demo-synthetic" and model["trained_on"]["synthetic"] is True
    assert len(model["classes"]) == 10
    # its held-out accuracy on the synthetic set, as recorded in the checkpoint
    assert model["metrics"]["accuracy"] >= 0.85
    answer = p.service("POST", "api/classify", "alice", json={"dataset": "p-2026-001/sem-particles"}).json()
    assert answer["model"]["name"] == "demo-synthetic"
    assert answer["classified"] == 3 and answer["failed"] == 0
    for result in answer["results"]:
        assert abs(sum(result["scores"].values()) - 1) < 1e-4
