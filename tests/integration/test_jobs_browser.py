"""A person in a browser runs a headless job: the jobs form, the live job page, the results.

Drives the Debian ``chromium`` (``/usr/bin/chromium``) headless with Python playwright against
the real platform of the ``platform`` fixture (hub, proxy, dass service, real job runner).
Skipped when chromium or playwright is missing (``playwright install`` is never used: it
downloads browsers).
"""

from __future__ import annotations

import re
import time

import pytest

from tests.support import ARTIFACTS, browser_missing, failure_screenshot, hub_login, new_page

# checked at collection, so that a machine without a browser does not start the platform for nothing
pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.skipif(bool(browser_missing()), reason=browser_missing() or "browser available"),
]
NOTEBOOK = "sem/service/image_summary.ipynb"
DATASET = "p-2026-001/sem-nanowires"


def test_submit_a_job_from_the_form_and_follow_it_live(platform, browser):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    context, page, console_errors = new_page(browser, width=1300)
    base = f"{platform.url}/services/dass/"
    try:
        # -- log in on the hub, then open the jobs page (the service's OAuth login is silent) ----
        hub_login(page, platform.url, "alice", platform.secrets["user_password"])
        page.goto(base + "jobs")
        page.wait_for_url(re.compile(re.escape(base) + r"jobs$"))
        expect(page.locator("#user")).to_have_text("alice")
        timings["jobs page"] = time.monotonic() - t0

        # -- the form ------------------------------------------------------------------------------
        form = page.locator("#job-form")
        expect(form).to_be_visible()
        page.check("input[name=source][value=service]")
        page.select_option("select#notebook", NOTEBOOK)
        fields = page.locator(f'fieldset.params[data-notebook="{NOTEBOOK}"]')
        expect(fields).to_be_visible()
        assert fields.evaluate("fs => !fs.disabled")
        # the other notebooks' fields are hidden and not submitted
        for other in page.locator("fieldset.params").all():
            if other.get_attribute("data-notebook") != NOTEBOOK:
                expect(other).to_be_hidden()
                assert other.evaluate("fs => fs.disabled")
        dataset_select = fields.locator("select[name='param.input_dataset']")
        offered = dataset_select.locator("option").evaluate_all("os => os.map(o => o.value)")
        assert DATASET in offered, offered
        assert not [d for d in offered if d.startswith("p-2026-002/")], offered  # bob's proposal
        assert not page.locator('input[name=datasets][value^="p-2026-002/"]').count()
        dataset_select.select_option(DATASET)
        fields.locator("input[name='param.max_images']").fill("2")
        expect(fields.locator("input[name='param.max_images']")).to_have_value("2")
        expect(dataset_select).to_have_value(DATASET)
        page.screenshot(path=str(ARTIFACTS / "jobs-form.png"), full_page=True)
        page.click("#submit")

        # -- the job page, live --------------------------------------------------------------------
        page.wait_for_url(re.compile(re.escape(base) + r"jobs/[0-9a-f]{32}$"))
        job_id = page.url.rsplit("/", 1)[-1]
        timings["submitted"] = time.monotonic() - t0
        badge = page.locator("#status")
        expect(badge).to_have_text(re.compile(r"QUEUED|IN_PROGRESS|COMPLETED"))
        expect(page.locator("#parameters")).to_contain_text("max_images")
        expect(page.locator("#datasets")).to_contain_text(DATASET)
        expect(page.locator("#log")).to_contain_text("cell 1/", timeout=90_000)  # filled while it runs
        expect(badge).to_have_text("COMPLETED", timeout=120_000)
        expect(badge).to_have_class(re.compile(r"status-COMPLETED"))
        timings["completed"] = time.monotonic() - t0
        # the page reloads itself once finished: outputs, the verify button and the notebook
        outputs = page.locator("#outputs")
        expect(outputs.get_by_role("link", name="output/summary.csv")).to_be_visible(timeout=30_000)
        link = outputs.get_by_role("link", name="output/summary.csv")
        assert link.get_attribute("href") == f"/services/dass/api/jobs/{job_id}/outputs/output/summary.csv"
        expect(page.locator("#log")).to_contain_text("cell 1/")
        frame_el = page.locator("iframe#notebook")
        expect(frame_el).to_be_visible()
        assert frame_el.get_attribute("sandbox") == ""
        assert frame_el.get_attribute("src") == f"/services/dass/api/jobs/{job_id}/notebook"
        expect(page.frame_locator("iframe#notebook").locator("body")).to_contain_text("max_images", timeout=30_000)
        page.click("#verify")
        expect(page.locator("#verify-result")).to_contain_text("every checksum matches", timeout=30_000)
        expect(page.locator("#cancel")).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "job-page.png"), full_page=True)

        # -- back on the jobs page: the job is in the table, newest first ---------------------------
        page.goto(base + "jobs")
        first = page.locator("table#jobs tbody tr").first
        expect(first).to_have_attribute("data-job", job_id)
        expect(first.locator(".badge")).to_have_text("COMPLETED")
        timings["done"] = time.monotonic() - t0
    except Exception:
        failure_screenshot(page, "jobs-browser-failure.png")
        raise
    finally:
        print("browser timings (s since start):", {k: round(v, 1) for k, v in timings.items()})
        if console_errors:
            print("browser console errors:", *console_errors[:20], sep="\n  ")
        context.close()
    # the executed notebook's own scripts are blocked on purpose (sandboxed iframe, CSP sandbox)
    unexpected = [e for e in console_errors if "frame is sandboxed" not in e]
    assert not unexpected, unexpected


def _sleeper_notebook() -> str:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    params = new_code_cell("seconds: float = 1.0  # how long to sleep")
    params.metadata["tags"] = ["parameters"]
    return nbformat.writes(new_notebook(cells=[params, new_code_cell("import time\ntime.sleep(seconds)")]))


def test_upload_a_notebook_then_cancel_the_job_in_a_browser(platform, browser, tmp_path):
    from playwright.sync_api import expect

    notebook = tmp_path / "sleep a while.ipynb"
    notebook.write_text(_sleeper_notebook())
    context, page, console_errors = new_page(browser, width=1300)
    base = f"{platform.url}/services/dass/"
    try:
        hub_login(page, platform.url, "alice", platform.secrets["user_password"])
        page.goto(base + "jobs")
        # choosing a file shows its parameters (POST jobs/inspect with the xsrf token)
        page.set_input_files("input#upload", str(notebook))
        expect(page.locator("input[name=source][value=upload]")).to_be_checked()
        upload = page.locator("fieldset#upload-params")
        expect(upload).to_be_visible()
        expect(page.locator("#upload-status")).to_contain_text("1 parameter")
        seconds = upload.locator("input[name='param.seconds']")
        expect(seconds).to_have_value("1.0")
        seconds.fill("120")
        page.select_option("select#stack", "stm")
        page.click("#submit")
        page.wait_for_url(re.compile(re.escape(base) + r"jobs/[0-9a-f]{32}$"))
        expect(page.locator("#status")).to_have_text("IN_PROGRESS", timeout=60_000)
        expect(page.locator("table.details")).to_contain_text("sleep_a_while.ipynb (uploaded)")
        page.click("#cancel")
        expect(page.locator("#status")).to_have_text("STOPPED", timeout=60_000)
        expect(page.locator("#reason")).to_have_text("cancelled by alice", timeout=30_000)
        expect(page.locator("#cancel")).to_have_count(0)
    except Exception:
        failure_screenshot(page, "jobs-browser-failure.png")
        raise
    finally:
        context.close()
    assert not console_errors, console_errors
