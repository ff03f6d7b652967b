"""The SEM stack's ipywidgets app (:class:`dass.sem.widgets.ClassifierApp`) against a real service.

The app is driven through its methods (what its buttons call), with a real dass service and a
real, seeded untrained checkpoint registered as the default model (as in test_classify_api).
What the app shows is compared with what the API answers for the same images.
"""

from __future__ import annotations

import pytest

pytest.importorskip("ipywidgets", reason="the app is an ipywidgets app")
pytest.importorskip("torch", reason="the service classifies with torch")

from dass.data.session import Dataset  # noqa: E402
from dass.data.storage import Storage  # noqa: E402
from dass.sem.client import SemClient  # noqa: E402
from dass.sem.registry import ModelRegistry  # noqa: E402
from dass.sem.widgets import ClassifierApp, image_files  # noqa: E402

from tests.service.service_support import make_repository, start_service  # noqa: E402
from tests.sem_support import MODEL, add_sem_dataset, sem_png, write_untrained_checkpoint  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ALICE_SEM = "p-2026-001/sem-widget-test"  # alice's proposal


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> dict[str, str]:
    urls = make_repository(tmp_path_factory.mktemp("repo"))
    add_sem_dataset(urls, ALICE_SEM, "SYNTHETIC SEM images for the widget test", {
        "a_wires.png": sem_png("Nanowires", 11),
        "b_tips.png": sem_png("Tips", 12),
        "c_broken.tif": b"II*\x00 this is not a TIFF",
    })
    return urls


@pytest.fixture(scope="module")
def service(loop_thread, hub, repository, tmp_path_factory):
    svc = start_service(loop_thread, tmp_path_factory.mktemp("service"), hub.api_url, **repository,
                        extra_config="c.SemClassifyService.device = 'cpu'")
    checkpoint = write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")
    ModelRegistry(Storage(url=repository["repo_url"])).register(str(checkpoint), MODEL, default=True)
    yield svc
    svc.stop()


@pytest.fixture
def mounted(repository) -> Dataset:
    url = f"{repository['repo_url']}/{ALICE_SEM}"
    proposal, name = ALICE_SEM.split("/")
    return Dataset(id=ALICE_SEM, proposal=proposal, name=name, url=url, path=url[len("file://"):])


def app_for(service, user: str, datasets=()) -> ClassifierApp:
    return ClassifierApp(SemClient(url=service.url, token=f"{user}-token"), datasets=list(datasets), batch=2)


def test_the_app_says_which_model_and_that_it_is_synthetic(service):
    app = app_for(service, "alice")
    assert f"<b>{MODEL}</b>" in app.model_info.value and "mobilenet_v3_small" in app.model_info.value
    assert "SYNTHETIC" in app.model_info.value


def test_classify_a_mounted_dataset_in_batches_and_confirm_a_change(service, mounted):
    app = app_for(service, "alice", [mounted])
    assert app.dataset.value == ALICE_SEM
    assert image_files(mounted) == ["a_wires.png", "b_tips.png", "c_broken.tif"]
    answer = app.classify_dataset()
    # two requests of two images: the progress bar reached the end, every file has a row
    assert app.progress.value == app.progress.max == 3 and app.progress.bar_style == "success"
    assert [r["path"] for r in answer["results"]] == ["a_wires.png", "b_tips.png", "c_broken.tif"]
    assert [r["status"] for r in answer["results"]] == ["ok", "ok", "error"]
    assert len(app.results_box.children) == 3
    # the app shows what the API answers for the same image
    direct = SemClient(url=service.url, token="alice-token").classify_dataset(ALICE_SEM, ["a_wires.png"])
    assert direct["results"][0]["scores"] == pytest.approx(answer["results"][0]["scores"])
    assert answer["results"][0]["display_name"] in app.results_box.children[0].children[1].children[1].value

    label = app.confirm(0, "Tips")  # a change of the suggestion
    assert label["category"] == "Tips"
    assert "stored as" in app._rows[0]["state"].value
    found = SemClient(url=service.url, token="alice-token").search("Tips")
    assert ALICE_SEM in [d["id"] for d in found]
    # the broken file cannot be confirmed and says why, in the status line
    assert app.confirm(2) is None and "not classified" in app.status.value


def test_uploads_are_stored_and_classified_per_file(service):
    app = app_for(service, "alice")
    answer = app.classify_uploads([("w.png", sem_png("Nanowires", 21)), ("x.txt", b"hello")])
    assert (answer["classified"], answer["failed"]) == (1, 1)
    assert answer["dataset"].startswith("p-2026-001/sem-upload-")
    assert "1 classified, 1 with errors" in app.status.value
    # the thumbnail of the good file is shown
    assert bytes(app.results_box.children[0].children[0].value).startswith(b"\x89PNG")


def test_nothing_chosen_and_someone_elses_proposal_are_clear_errors(service):
    app = app_for(service, "alice")
    assert app.classify_uploads([]) is None and "choose one or more images" in app.status.value
    assert app.classify_dataset() is None and "no mounted dataset" in app.status.value
    assert app.classify_uploads([("w.png", sem_png("Tips", 2))], proposal="p-2026-002") is None
    assert "p-2026-002" in app.status.value and app.progress.bar_style == "danger"


def test_without_a_service_the_app_says_so():
    app = ClassifierApp(SemClient(url="http://127.0.0.1:9/services/dass/", token="t", timeout=2), datasets=[])
    assert "No classifier" in app.model_info.value and "cannot reach" in app.model_info.value
