"""A person in a browser classifies SEM images: upload, per-file errors, confirm with a change.

On a laptop-sized window (1280x800): each image is shown from the service's PNG preview (a
12-bit FEI TIFF included, which a browser cannot show itself), with its instrument metadata and
the 12-bit note, the scores as bars each beside its category's representative image, and the
model box says what the model was trained on; nothing overflows the window's width.

Drives the Debian ``chromium`` headless with Python playwright against the real platform of
the ``platform`` fixture (hub, proxy, dass service). A seeded, untrained, SYNTHETIC
``mobilenet_v3_small`` checkpoint is registered as the default model of the platform's
repository first (the one registered before, if any, is the default again afterwards); the
page's suggestions are compared with :class:`dass.sem.classify.Classifier` run on the same
bytes. Skipped when chromium or playwright is missing.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.sem_support import sem_png, write_untrained_checkpoint
from tests.support import ARTIFACTS, browser_missing, failure_screenshot, hub_login, new_page

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.skipif(bool(browser_missing()), reason=browser_missing() or "browser available"),
]
MODEL = "browser-test-untrained"


@pytest.fixture
def sem_model(platform, tmp_path):
    """The untrained test checkpoint as the platform's default model (restored afterwards)."""
    from dass.data.storage import Storage
    from dass.sem.classify import Classifier
    from dass.sem.registry import ModelRegistry

    registry = ModelRegistry(Storage(url=platform.storage_url))
    before = registry.default_name()
    checkpoint = write_untrained_checkpoint(tmp_path / "model.pt", MODEL)
    registry.register(str(checkpoint), MODEL, default=True)
    yield Classifier.load(str(checkpoint), device="cpu")
    if before and before != MODEL:
        registry.set_default(before)


def test_upload_see_errors_confirm_a_change_and_find_it_by_category(platform, browser, sem_model):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    from tests.service.test_classify_api import _twelve_bit_fei_tiff

    images = {"wires.png": sem_png("Nanowires", 41), "tips.png": sem_png("Tips", 42), "fei.tif": _twelve_bit_fei_tiff()}
    expected = dict(zip(images, sem_model.classify(list(images.values()))))
    names = dict(zip(sem_model.info.classes, sem_model.info.display_names))
    t0 = time.monotonic()
    context, page, console_errors = new_page(browser, width=1280)
    page.set_viewport_size({"width": 1280, "height": 800})
    base = f"{platform.url}/services/dass/"
    try:
        hub_login(page, platform.url, "alice", platform.secrets["user_password"])
        page.goto(base)
        page.click("#nav-sem")
        page.wait_for_url(re.compile(re.escape(base) + r"sem$"))
        expect(page.locator("#user")).to_have_text("alice")
        # which model, trained on what, and that it is SYNTHETIC
        expect(page.locator("#model-name")).to_have_text(MODEL, timeout=60_000)
        expect(page.locator("#model-data")).to_have_text("synthetic://untrained")
        expect(page.locator("#model-trained-on")).to_contain_text("SYNTHETIC images (made by a program")
        expect(page.locator("#model-trained-on")).to_contain_text("from synthetic://untrained")
        expect(page.locator("#synthetic-warning")).to_contain_text("never a real micrograph")
        expect(page.locator("#proposal")).to_have_value("p-2026-001")

        # two images and a file that is not one
        page.set_input_files("#files", [
            {"name": name, "mimeType": "image/tiff" if name.endswith(".tif") else "image/png", "buffer": data}
            for name, data in images.items()
        ] + [{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image\n"}])
        rows = page.locator("#results tbody tr.result")
        expect(rows).to_have_count(4, timeout=60_000)
        expect(page.locator("#upload-status")).to_contain_text("3 classified, 1 not classified")
        bad = page.locator('tr.result.error[data-file="notes.txt"]')
        expect(bad).to_contain_text("not classified")
        expect(bad).to_contain_text("notes.txt")
        for name, prediction in expected.items():
            row = page.locator(f'tr.result.ok[data-file="{name}"]')
            expect(row.locator(".suggestion")).to_have_text(names[prediction.category])
            expect(row.locator(".certainty")).to_have_text(f"{100 * prediction.certainty:.1f} %")
            expect(row.locator(".bars .bar")).to_have_count(len(sem_model.info.classes))
            # each bar has its category's representative image beside it, loaded
            expect(row.locator(".bars img.rep")).to_have_count(len(sem_model.info.classes))
            # the preview comes from the service (TIFF included) and is really loaded
            thumb = row.locator("img.thumb")
            expect(thumb).to_be_visible()
            expect(thumb).to_have_attribute("src", re.compile(r"api/classify/preview\?dataset="))
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
        tiff = page.locator('tr.result.ok[data-file="fei.tif"]')
        expect(tiff.locator('dd[data-key="magnification"]')).to_have_text("7789 x")
        expect(tiff.locator('dd[data-key="instrument"]')).to_have_text("Helios G4 UX")
        expect(tiff.locator(".note")).to_contain_text("12-bit data in a 16-bit TIFF")
        page.wait_for_function("() => [...document.querySelectorAll('img.rep')].every(i => i.complete && i.naturalWidth > 0)")
        # a laptop screen: nothing wider than the window
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        page.screenshot(path=str(ARTIFACTS / "sem-results-1280x800.png"))
        dataset = page.locator("#upload-status").get_attribute("data-dataset")
        assert dataset and dataset.startswith("p-2026-001/sem-upload-"), dataset
        page.screenshot(path=str(ARTIFACTS / "sem-results.png"), full_page=True)

        # change the category of the first image and confirm it
        row = page.locator('tr.result.ok[data-file="wires.png"]')
        changed = next(c for c in ("Nanowires", "Porous_Sponge") if c != expected["wires.png"].category)
        row.locator("select.category").select_option(changed)
        expect(row.locator("button.confirm")).to_have_text("Change")
        row.locator("button.confirm").click()
        expect(row.locator(".label-status")).to_have_text(f"saved: {names[changed]} (by alice)")
        page.screenshot(path=str(ARTIFACTS / "sem-confirmed.png"), full_page=True)
    except Exception:
        failure_screenshot(page, "sem-browser-failure.png")
        raise
    finally:
        print(f"SEM browser test: {time.monotonic() - t0:.1f} s")
        context.close()
    assert not console_errors, console_errors

    # the dataset is found by its confirmed category, by alice and not by bob
    found = platform.service("GET", f"api/datasets?category={changed}", "alice")
    assert found.status_code == 200, found.text
    assert dataset in {d["id"] for d in found.json()["datasets"]}
    hidden = platform.service("GET", f"api/datasets?category={changed}", "bob").json()["datasets"]
    assert dataset not in {d["id"] for d in hidden}
