"""SEM classification through the REST API: upload, classify, confirm, search by category.

A real dass service (in-process, real HubOAuth against the small real hub of
``service_support``) with a real, seeded but *untrained* ``mobilenet_v3_small`` checkpoint
registered in the repository's model registry. Nothing is mocked: every score the API answers
is compared with :meth:`dass.sem.classify.Classifier.classify` run directly on the same bytes.
The images are SYNTHETIC (:func:`dass.sem.synthetic.generate`).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from dass.data.storage import Storage
from dass.sem.categories import CATEGORY_IDS
from dass.sem.web import default_handlers as sem_handlers

from tests.service.service_support import make_repository, start_service
from tests.sem_support import MODEL, add_sem_dataset, sem_png, write_untrained_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PUBLIC = "p-2025-009/public-sem"  # a public SEM dataset of a proposal neither alice nor bob is in
MAX_FILE_BYTES = 200_000
MAX_REQUEST_BYTES = 2_000_000
MAX_FILES = 12


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> dict[str, str]:
    """The service tests' repository plus a public SEM dataset with real (synthetic) images."""
    urls = make_repository(tmp_path_factory.mktemp("repo"))
    add_sem_dataset(urls, PUBLIC, "Public SYNTHETIC SEM images", {"wires.png": sem_png("Nanowires", 7)},
                    access={"public": True})
    return urls


@pytest.fixture(scope="module")
def service(loop_thread, hub, repository, tmp_path_factory):
    svc = start_service(
        loop_thread, tmp_path_factory.mktemp("service"), hub.api_url, **repository,
        extra_config="\n".join([
            f"c.SemClassifyService.max_file_bytes = {MAX_FILE_BYTES}",
            f"c.SemClassifyService.max_request_bytes = {MAX_REQUEST_BYTES}",
            f"c.SemClassifyService.max_files = {MAX_FILES}",
            "c.SemClassifyService.batch_size = 4",
            "c.SemClassifyService.device = 'cpu'",
        ]),
    )
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")


@pytest.fixture(scope="module")
def classifier(checkpoint):
    from dass.sem.classify import Classifier

    return Classifier.load(str(checkpoint), device="cpu")


@pytest.fixture(scope="module")
def model(service, repository, checkpoint):
    """Registers the checkpoint as the default model of the service's repository."""
    from dass.sem.registry import ModelRegistry

    ModelRegistry(Storage(url=repository["repo_url"])).register(str(checkpoint), MODEL, default=True)
    return MODEL


def classify(service, token: str, files: list[tuple[str, bytes]], proposal: str | None = None, **kw):
    data = {"proposal": proposal} if proposal is not None else None
    return service.request("POST", "api/classify", token, files=[("files", f) for f in files], data=data, **kw)


def assert_error(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"status", "message"} and body["status"] == status
    for word in words:
        assert word in body["message"], body["message"]
    return body


def validate(service, body: dict, schema: str) -> None:
    doc = service.get("api/openapi.json").json()
    jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema}",
                                     "components": doc["components"]}).validate(body)


def uploads_of(repository, proposal: str) -> set[str]:
    root = Path(repository["repo_url"][len("file://"):]) / proposal
    return {p.name for p in root.iterdir() if p.name.startswith("sem-upload-")} if root.exists() else set()


# -- without a model (runs first: the module's model fixture is not requested yet) -------------


def test_without_a_registered_model_answers_503_and_stores_nothing(service, repository):
    before = uploads_of(repository, "p-2026-001")
    r = classify(service, "alice-token", [("a.png", sem_png("Tips", 1))])
    assert_error(r, 503, "dass sem train", "register")
    assert_error(service.get("api/classify/model", "alice-token"), 503, "no SEM classifier is registered")
    assert uploads_of(repository, "p-2026-001") == before


def test_every_classify_route_is_documented(service):
    doc = service.get("api/openapi.json").json()
    for path, _handler in sem_handlers:
        if not path.startswith("api/"):
            continue  # the page
        templated = "/" + path.replace("([A-Za-z0-9_.-]+)", "{category}").replace("([0-9a-f]{32})", "{id}")
        assert templated in doc["paths"], f"route {path!r} is not in openapi.yaml"
    params = [p["name"] for p in doc["paths"]["/api/datasets"]["get"]["parameters"]]
    assert "category" in params


# -- upload and classify -------------------------------------------------------------------------


def test_upload_stores_the_images_and_classifies_each_file(service, repository, model, classifier):
    wires, tips = sem_png("Nanowires", 3), sem_png("Tips", 4)
    truncated = sem_png("Powder", 5)[:200]
    big = np.random.default_rng(0).integers(0, 256, MAX_FILE_BYTES + 1000, dtype=np.uint8).tobytes()
    files = [("wires.png", wires), ("notes.txt", b"not an image at all\n"), ("tips.png", tips),
             ("empty.png", b""), ("cut.png", truncated), ("big.png", big)]
    r = classify(service, "alice-token", files)  # alice has one proposal: no need to name it
    assert r.status_code == 200, r.text
    body = r.json()
    validate(service, body, "ClassifyAnswer")
    assert body["proposal"] == "p-2026-001"
    assert (body["classified"], body["failed"]) == (2, 4)
    results = body["results"]
    assert [x["file"] for x in results] == [f for f, _ in files]
    assert [x["status"] for x in results] == ["ok", "error", "ok", "error", "error", "error"]
    assert "notes.txt" in results[1]["reason"]
    assert "empty" in results[3]["reason"]
    assert "cut.png" in results[4]["reason"]
    assert "too large" in results[5]["reason"] and str(MAX_FILE_BYTES) in results[5]["reason"]

    # the scores are those of the classifier run directly on the same bytes
    expected = classifier.classify([wires, tips])
    for got, want in zip((results[0], results[2]), expected):
        assert got["category"] == want.category
        assert got["certainty"] == pytest.approx(want.certainty, rel=1e-5)
        assert got["scores"].keys() == set(CATEGORY_IDS)
        for c in CATEGORY_IDS:
            assert got["scores"][c] == pytest.approx(want.scores[c], rel=1e-5, abs=1e-7)
        assert sum(got["scores"].values()) == pytest.approx(1.0)
        assert got["category"] == max(got["scores"], key=got["scores"].get)
        assert [c["id"] for c in got["categories"]] == sorted(got["scores"], key=lambda c: -got["scores"][c])
    # the model used, and that it is SYNTHETIC
    assert body["model"]["name"] == MODEL and body["model"]["architecture"] == "mobilenet_v3_small"
    assert body["model"]["synthetic"] is True and body["model"]["trained_on"]["synthetic"] is True

    # the images were stored, unchanged, as a new dataset only the proposal sees
    dataset = body["dataset"]
    proposal, name = dataset.split("/")
    assert proposal == "p-2026-001" and name.startswith("sem-upload-")
    folder = Path(repository["repo_url"][len("file://"):]) / dataset
    assert sha((folder / results[0]["path"]).read_bytes()) == sha(wires)
    assert sha((folder / results[2]["path"]).read_bytes()) == sha(tips)
    assert sorted(p.name for p in folder.iterdir()) == sorted([results[0]["path"], results[2]["path"], "dataset.json"])
    # each stored image has its preview, made by the service on request and cached in the dataset
    for result in (results[0], results[2]):
        assert result["preview"].endswith(f"api/classify/preview?dataset={proposal}%2F{name}&path={result['path']}")
        preview = service.get(result["preview"].removeprefix("/services/dass/"), "alice-token")
        assert preview.status_code == 200 and preview.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert (folder / ".dass-previews" / f"{result['path']}.png").read_bytes() == preview.content
    assert results[1].get("preview") is None
    meta = service.get(f"api/datasets/{dataset}", "alice-token").json()
    assert meta["technique"] == "SEM" and "upload" in meta["title"]
    assert meta["metadata"]["creators"] == [{"name": "alice"}]
    assert meta["access_groups"] == ["p-2026-001"] and meta["public"] is False
    assert service.get(f"api/datasets/{dataset}", "bob-token").status_code == 404

    # the representative image of every category is the checkpoint's
    for c in body["model"]["classes"][:3]:
        rep = service.get(c["representative"].removeprefix("/services/dass/"), "alice-token")
        assert rep.status_code == 200 and rep.headers["Content-Type"] == "image/png"
        assert rep.content == classifier.representative(c["id"])
    assert results[0]["categories"][0]["representative"].endswith(
        f"/api/classify/categories/{results[0]['category']}/representative")


def _twelve_bit_fei_tiff() -> bytes:
    """A 16-bit TIFF holding 12-bit data, with an FEI header whose ResolutionY marks a data bar."""
    from tests.sem.test_fei import HEADER, fei_tiff

    header = {**HEADER, "Image": {"ResolutionX": "128", "ResolutionY": "88", "MagCanvasRealWidth": "0.2072"}}
    pixels = (np.random.default_rng(2).integers(0, 4096, (96, 128))).astype(np.uint16)
    pixels[88:] = 200  # the data bar
    pixels[0, 0] = 4095
    return fei_tiff(header, pixels=pixels)


def test_a_tiff_gets_a_server_made_preview_its_metadata_and_a_12_bit_note(service, repository, model, classifier):
    from PIL import Image

    from dass.sem.io import read_sem
    from dass.sem.preview import BAR_COLOUR, preview_png

    tiff = _twelve_bit_fei_tiff()
    r = classify(service, "alice-token", [("fei.tif", tiff)])
    assert r.status_code == 200, r.text
    body = r.json()
    validate(service, body, "ClassifyAnswer")
    result = body["results"][0]
    assert result["status"] == "ok"
    assert len(result["notes"]) == 1 and "12-bit data in a 16-bit TIFF" in result["notes"][0]
    assert result["metadata"]["magnification"]["value"] == pytest.approx(0.2072 / 2.66e-05)
    assert result["metadata"]["instrument"] == "Helios G4 UX"
    # the scores are the classifier's on the same bytes (12-bit scaling and FEI data bar included)
    want = classifier.classify([tiff])[0]
    assert result["category"] == want.category
    assert result["scores"]["Tips"] == pytest.approx(want.scores["Tips"], rel=1e-5, abs=1e-7)

    preview = service.get(result["preview"].removeprefix("/services/dass/"), "alice-token")
    assert preview.status_code == 200 and preview.headers["Content-Type"] == "image/png"
    assert preview.content == preview_png(read_sem(tiff), max_size=512)
    img = np.asarray(Image.open(io.BytesIO(preview.content)))
    assert img.shape == (96, 128, 3)
    # the data bar (rows 88..95, from ResolutionY) is outlined, the image above is gray
    assert tuple(img[88, 64]) == BAR_COLOUR and tuple(img[95, 64]) == BAR_COLOUR
    assert img[40, 64, 0] == img[40, 64, 1] == img[40, 64, 2]
    # 12-bit scaling: the brightest pixel is white, not 6 % gray
    assert img[:88, :, 0].max() == 255

    # the preview of a stored image nobody classified is made on request and cached
    dataset = PUBLIC
    cached = Path(repository["repo_url"][len("file://"):]) / dataset / ".dass-previews" / "wires.png.png"
    cached.unlink(missing_ok=True)
    first = service.get(f"api/classify/preview?dataset={dataset}&path=wires.png", "alice-token")
    assert first.status_code == 200 and cached.read_bytes() == first.content

    # bad requests name what to fix; another proposal's upload is not found
    dataset, path = body["dataset"], result["path"]
    assert_error(service.get("api/classify/preview?path=x.tif", "alice-token"), 400, "?dataset=")
    assert_error(service.get(f"api/classify/preview?dataset={dataset}&path=../x.tif", "alice-token"), 400,
                 "invalid path")
    assert_error(service.get(f"api/classify/preview?dataset={dataset}&path=nope.tif", "alice-token"), 404,
                 "no file 'nope.tif'")
    assert_error(service.get(f"api/classify/preview?dataset={dataset}&path={path}", "bob-token"), 404,
                 f"dataset {dataset} not found")
    assert_error(service.get(f"api/classify/preview?dataset={dataset}&path={path}&size=9", "alice-token"), 400,
                 "unknown query parameter(s) size")
    folder = Path(repository["repo_url"][len("file://"):]) / dataset
    (folder / "notes.txt").write_text("not an image")
    assert_error(service.get(f"api/classify/preview?dataset={dataset}&path=notes.txt", "alice-token"), 422,
                 "no preview of notes.txt", "not an image")


def test_zip_members_are_classified_one_by_one(service, model, classifier):
    a, b = sem_png("Particles", 11), sem_png("Fibres", 12)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("scans/a.png", a)
        z.writestr("scans/readme.txt", "hello")
        z.writestr("b.png", b)
        z.writestr("__MACOSX/._b.png", "resource fork")
    r = classify(service, "staffer-token", [("batch.zip", buf.getvalue())])  # staff is no proposal
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["file"] for x in results] == ["batch.zip/scans/a.png", "batch.zip/scans/readme.txt", "batch.zip/b.png"]
    assert [x["status"] for x in results] == ["ok", "error", "ok"]
    want = classifier.classify([a, b])
    assert [results[0]["category"], results[2]["category"]] == [w.category for w in want]
    assert results[2]["scores"]["Fibres"] == pytest.approx(want[1].scores["Fibres"], rel=1e-5)


def test_a_corrupt_zip_is_a_per_file_error_and_all_bad_is_still_200(service, model):
    r = classify(service, "alice-token", [("broken.zip", b"PK\x03\x04 this is not a zip")])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dataset"] is None and body["classified"] == 0
    assert body["results"][0]["status"] == "error" and "zip" in body["results"][0]["reason"]


def test_limits_and_malformed_requests(service, model):
    tiny = sem_png("Tips", 2, size=(32, 32))
    assert_error(classify(service, "alice-token", [(f"{i}.png", tiny) for i in range(MAX_FILES + 1)]),
                 413, "too many", str(MAX_FILES))
    huge = [(f"{i}.bin", b"x" * 190_000) for i in range(11)]  # over the request limit
    assert_error(classify(service, "alice-token", huge), 413, str(MAX_REQUEST_BYTES))
    assert_error(service.request("POST", "api/classify", "alice-token", data="hello",
                                 headers={"Content-Type": "text/plain"}), 415, "multipart")
    assert_error(service.request("POST", "api/classify", "alice-token", data="{nope",
                                 headers={"Content-Type": "application/json"}), 400, "JSON")
    assert_error(service.request("POST", "api/classify", "alice-token", files=[("other", ("a.png", tiny))]),
                 400, "files")
    assert_error(service.request("POST", "api/classify", "alice-token", data={"proposal": "p-2026-001"},
                                 files=[]), 415)
    assert_error(service.request("POST", "api/classify", None, files=[("files", ("a.png", tiny))]), 401)
    # a small zip that expands past the request limit (zeros compress well)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(MAX_FILES - 1):
            z.writestr(f"{i}.png", bytes(MAX_FILE_BYTES - 1))
    assert len(bomb.getvalue()) < 100_000
    assert_error(classify(service, "alice-token", [("bomb.zip", bomb.getvalue())]), 413, "expand")


def test_a_zip_member_compressed_like_a_bomb_is_refused_and_the_rest_classified(service, model):
    """A member whose expansion ratio is above max_zip_ratio is not decompressed (a per-file
    reason); the other files of the request are classified."""
    good = sem_png("Tips", 3, size=(64, 64))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("flat.tif", bytes(1024 * 1024))  # 1 MiB of zeros: about 1000:1
        z.writestr("tips.png", good)
    r = classify(service, "alice-token", [("mixed.zip", archive.getvalue())])
    assert r.status_code == 200, r.text
    by_file = {x["file"]: x for x in r.json()["results"]}
    assert by_file["mixed.zip/flat.tif"]["status"] == "error" and "zip bomb" in by_file["mixed.zip/flat.tif"]["reason"]
    assert "max_zip_ratio" in by_file["mixed.zip/flat.tif"]["reason"]
    assert by_file["mixed.zip/tips.png"].get("category")


def test_the_proposal_must_be_one_of_the_callers(service, model):
    tiny = sem_png("Tips", 2, size=(32, 32))
    # bob is not in p-2026-001, and p-2099-404 does not exist: the same answer
    for proposal in ("p-2026-001", "p-2099-404"):
        assert_error(classify(service, "bob-token", [("a.png", tiny)], proposal), 404,
                     f"proposal {proposal} not found")
    assert_error(classify(service, "dave-token", [("a.png", tiny)]), 400, "no proposal")
    r = classify(service, "bob-token", [("a.png", tiny)], "p-2026-002")
    assert r.status_code == 200, r.text
    assert r.json()["dataset"].startswith("p-2026-002/sem-upload-")


def test_the_model_route_describes_the_loaded_model(service, model, classifier):
    r = service.get("api/classify/model", "bob-token")
    assert r.status_code == 200, r.text
    body = r.json()
    validate(service, body, "ClassifierModel")
    assert body["name"] == MODEL and body["input_size"] == classifier.info.input_size
    assert [c["id"] for c in body["classes"]] == classifier.info.classes
    assert body["synthetic"] is True and body["device"] == "cpu"
    assert_error(service.get("api/classify/categories/Unicorns/representative", "bob-token"), 404, "Unicorns")


# -- confirm and search ----------------------------------------------------------------------------


def test_confirm_change_and_search_by_category(service, repository, model):
    a, b = sem_png("Nanowires", 21), sem_png("Powder", 22)
    r = classify(service, "alice-token", [("a.png", a), ("b.png", b)], "p-2026-001")
    assert r.status_code == 200, r.text
    body = r.json()
    dataset = body["dataset"]
    first, second = body["results"]
    folder = Path(repository["repo_url"][len("file://"):]) / dataset
    for c in CATEGORY_IDS:  # nothing is confirmed yet
        assert dataset not in {d["id"] for d in service.get(f"api/datasets?category={c}", "alice-token")
                               .json()["datasets"]}

    # change the first image's category (to one that is not the suggestion)
    changed = next(c for c in ("Nanowires", "Tips") if c != first["category"])
    r = service.request("POST", f"api/classify/{first['id']}/confirm", "alice-token", json={"category": changed})
    assert r.status_code == 200, r.text
    label = r.json()
    validate(service, label, "Label")
    assert (label["category"], label["suggested"], label["confirmed_by"]) == (changed, first["category"], "alice")
    assert label["score"] == pytest.approx(first["scores"][changed])
    assert label["certainty"] == pytest.approx(first["certainty"])
    assert label["model"] == MODEL

    # accept the second image's suggestion (no body)
    r = service.request("POST", f"api/classify/{second['id']}/confirm", "alice-token")
    assert r.status_code == 200, r.text
    assert r.json()["category"] == second["category"]

    # stored in the sidecar, in dataset.json, in the catalogue; the images never changed
    sidecar = json.loads((folder / (first["path"] + ".label.json")).read_text())
    assert sidecar["category"] == changed and sidecar["scores"] == pytest.approx(first["scores"])
    assert sidecar["dataset"] == dataset and sidecar["image"] == first["path"]
    assert sha((folder / first["path"]).read_bytes()) == sha(a)
    assert sha((folder / second["path"]).read_bytes()) == sha(b)
    domain = json.loads((folder / "dataset.json").read_text())["domain"]
    assert domain["labels"][first["path"]]["category"] == changed
    assert domain["labels"][second["path"]]["category"] == second["category"]
    assert domain["categories"] == sorted({changed, second["category"]})
    record = service.get(f"api/classify/{first['id']}", "alice-token").json()
    validate(service, record, "Classification")
    assert (record["category"], record["confirmed_by"]) == (changed, "alice")

    found = service.get(f"api/datasets?category={changed}", "alice-token").json()["datasets"]
    assert dataset in {d["id"] for d in found}
    assert dataset in {d["id"] for d in service.get(f"api/datasets?category={changed}", "staffer-token")
                       .json()["datasets"]}
    # bob may not see the dataset: not found by category either
    assert dataset not in {d["id"] for d in service.get(f"api/datasets?category={changed}", "bob-token")
                           .json()["datasets"]}
    unused = next(c for c in CATEGORY_IDS if c not in (changed, second["category"]))
    assert dataset not in {d["id"] for d in service.get(f"api/datasets?category={unused}", "alice-token")
                           .json()["datasets"]}

    # confirming again replaces the label
    r = service.request("POST", f"api/classify/{first['id']}/confirm", "staffer-token",
                        json={"category": "Biological"})
    assert r.status_code == 200, r.text
    domain = json.loads((folder / "dataset.json").read_text())["domain"]
    assert domain["labels"][first["path"]]["confirmed_by"] == "staffer"
    assert domain["categories"] == sorted({"Biological", second["category"]})
    assert dataset in {d["id"] for d in service.get("api/datasets?category=Biological", "alice-token")
                       .json()["datasets"]}


def test_confirm_refuses_unknown_categories_and_other_users(service, model):
    r = classify(service, "alice-token", [("c.png", sem_png("Tips", 31))])
    result = r.json()["results"][0]
    url = f"api/classify/{result['id']}/confirm"
    body = assert_error(service.request("POST", url, "alice-token", json={"category": "Unicorns"}), 422, "Unicorns")
    assert all(c in body["message"] for c in CATEGORY_IDS)  # names the allowed ids
    assert_error(service.request("POST", url, "alice-token", json={"category": 3}), 422)
    assert_error(service.request("POST", url, "alice-token", json={"categry": "Tips"}), 400)
    # bob cannot see alice's upload: 404 like a missing classification
    assert_error(service.request("POST", url, "bob-token", json={}), 404, "not found")
    assert_error(service.get(f"api/classify/{result['id']}", "bob-token"), 404)
    assert_error(service.request("POST", f"api/classify/{'0' * 32}/confirm", "alice-token", json={}), 404)


def test_a_public_dataset_of_another_proposal_is_classified_but_not_labelled(service, repository, model,
                                                                               classifier):
    folder = Path(repository["repo_url"][len("file://"):]) / PUBLIC
    r = service.request("POST", "api/classify", "bob-token",
                        json={"dataset": PUBLIC, "paths": ["wires.png", "nope.png"]})
    assert r.status_code == 200, r.text
    body = r.json()
    validate(service, body, "ClassifyAnswer")
    ok, missing = body["results"]
    assert missing["status"] == "error" and "nope.png" in missing["reason"]
    want = classifier.classify([(folder / "wires.png").read_bytes()])[0]
    assert ok["category"] == want.category and ok["certainty"] == pytest.approx(want.certainty, rel=1e-5)
    # bob sees the public dataset but is not a member of its proposal: 403; the metadata is untouched
    before = (folder / "dataset.json").read_bytes()
    assert_error(service.request("POST", f"api/classify/{ok['id']}/confirm", "bob-token", json={}), 403,
                 "p-2025-009")
    assert (folder / "dataset.json").read_bytes() == before
    assert not (folder / "wires.png.label.json").exists()
    # every image of the dataset when paths is omitted; a dataset bob cannot see is 404
    r = service.request("POST", "api/classify", "bob-token", json={"dataset": PUBLIC})
    assert [x["file"] for x in r.json()["results"]] == ["wires.png"]
    assert_error(service.request("POST", "api/classify", "bob-token", json={"dataset": "p-2026-001/sem-grains"}),
                 404, "not found")
    assert_error(service.request("POST", "api/classify", "bob-token", json={"paths": []}), 400)


def test_the_sem_page_renders(service, model):
    r = service.get("sem", "alice-token")
    assert r.status_code == 200, r.text
    assert "drop" in r.text.lower() and 'value="p-2026-001"' in r.text
    assert "p-2026-002" not in r.text


def test_every_page_says_which_model_and_on_what_data(service, model):
    import re

    for page in ("", "jobs", "sem"):
        r = service.get(page, "alice-token")
        assert r.status_code == 200, (page, r.text[:300])
        banner = re.search(r'<div class="muted" id="sem-model-banner">(.*?)</div>', r.text, re.S).group(1)
        assert f"<strong>{MODEL}</strong> (mobilenet_v3_small)" in banner
        assert "<code>synthetic://untrained</code>" in banner and "SYNTHETIC training data" in banner


# -- the pure builders of dass.sem.labels ----------------------------------------------------------


def test_apply_label_copies_and_collects_the_categories():
    from dass.sem.labels import apply_label

    original = {"title": "t", "domain": {"other": 1, "labels": {"a.png": {"category": "Tips"}}}}
    snapshot = json.dumps(original)
    doc = apply_label(original, "b.png", {"category": "Nanowires"})
    doc = apply_label(doc, "a.png", {"category": "Powder"})  # replaces a.png's label
    assert json.dumps(original) == snapshot  # the input is not changed
    assert doc["domain"]["other"] == 1
    assert {k: v["category"] for k, v in doc["domain"]["labels"].items()} == {"a.png": "Powder", "b.png": "Nanowires"}
    assert doc["domain"]["categories"] == ["Nanowires", "Powder"]


def test_upload_names_and_metadata_are_valid():
    import datetime as dt

    from dass.data.metadata import NAME_RE, parse_metadata
    from dass.sem.labels import safe_filename, upload_dataset_name, upload_metadata

    assert NAME_RE.match(upload_dataset_name())
    assert safe_filename("dataset.json") != "dataset.json"
    assert not safe_filename("x.png.label.json").endswith(".label.json")
    assert safe_filename("..") == "image"
    taken = {"a.png", "a-2.png"}
    assert safe_filename("dir/a.png", taken) == "a-3.png"
    files = {"a.png": b"1", "b.png": b"22"}
    doc = upload_metadata("p-2026-001", "alice", files, today=dt.date(2026, 11, 22),
                          instrument_metadata={"a.png": {"instrument": "Supra 40"}})
    md = parse_metadata(json.dumps(doc).encode(), path="dataset.json", proposal="p-2026-001")
    assert md.creators[0].name == "alice" and md.technique == "SEM" and md.instrument == "Supra 40"
    assert md.access_groups == ["p-2026-001"] and not md.public
    assert md.checksums["b.png"] == "sha256:" + sha(b"22")


def test_uploads_reads_and_labels_leave_their_audit_rows(service, model):
    from dass.data.access import Identity

    admin = Identity("audit-check", frozenset(), admin=True)

    def mark() -> int:
        events, _ = service.app.audit_log.query(admin, limit=1)
        return events[0]["id"] if events else 0

    def rows(after: int) -> list[tuple]:
        events, _ = service.app.audit_log.query(admin, limit=100)
        return [(e["user"], e["action"], e["dataset"], e["path"], e["allowed"], e["status"], e["bytes"])
                for e in reversed(events) if e["id"] > after]

    start = mark()
    image = sem_png("Tips", 41)
    r = classify(service, "alice-token", [("d.png", image)])
    assert r.status_code == 200, r.text
    upload, result = r.json()["dataset"], r.json()["results"][0]
    assert service.request("POST", f"api/classify/{result['id']}/confirm", "alice-token", json={}).status_code == 200
    assert service.request("POST", f"api/classify/{result['id']}/confirm", "bob-token", json={}).status_code == 404
    r = service.request("POST", "api/classify", "bob-token", json={"dataset": "p-2026-001/sem-grains"})
    assert r.status_code == 404
    r = service.request("POST", "api/classify", "bob-token", json={"dataset": PUBLIC, "paths": ["wires.png"]})
    assert r.status_code == 200
    assert rows(start) == [
        ("alice", "classify.upload", upload, None, True, 200, len(image)),
        ("alice", "label.confirm", upload, result["path"], True, 200, None),
        ("bob", "label.confirm", None, None, False, 404, None),
        ("bob", "classify.read", "p-2026-001/sem-grains", None, False, 404, None),
        ("bob", "classify.read", PUBLIC, None, True, 200, None),
    ]


def test_confirm_exports_nxem_where_configured(service, repository, model):
    import h5py

    sem = service.app.web_app.settings["sem_service"]  # the SEM stack's part of the service
    r = classify(service, "alice-token", [("wires.png", sem_png("Nanowires", 31))])
    result = r.json()["results"][0]
    sem.export_nexus_on_confirm = True
    try:
        # an upload does not say what the sample is made of: the label is stored, the export says why not
        label = service.request("POST", result["confirm_url"].removeprefix("/services/dass/"), "alice-token",
                                json={}).json()
        validate(service, label, "Label")
        assert label["category"] == result["category"]
        assert "NXem requires sample/atom_types" in label["nexus"]["error"]
        # with the sample in dataset.json the confirm writes labels.nxs into the dataset
        folder = Path(repository["repo_url"][len("file://"):]) / result["dataset"]
        doc = json.loads((folder / "dataset.json").read_text())
        doc["domain"]["sample"] = {"atom_types": "Si", "preparation_date": "2026-03-14"}
        (folder / "dataset.json").write_text(json.dumps(doc))
        label = service.request("POST", result["confirm_url"].removeprefix("/services/dass/"), "alice-token",
                                json={"category": "Tips"}).json()
        assert label["nexus"]["written"] == f"{repository['repo_url']}/{result['dataset']}/labels.nxs"
        with h5py.File(folder / "labels.nxs", "r") as f:
            note = f["entry1/note_0001"]
            assert json.loads(note["data"][()])["label"]["category"] == "Tips"
    finally:
        sem.export_nexus_on_confirm = False
