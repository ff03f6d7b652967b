"""A person in a browser: log in, fill the spawn form, land in JupyterLab, run the landing notebook.

Drives the Debian ``chromium`` (``/usr/bin/chromium``) headless with Python playwright against
the real platform of the ``platform`` fixture. Skipped when chromium or playwright is missing
(``playwright install`` is never used: it downloads browsers).
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
DATASET = "p-2026-001/sem-nanowires"
LANDING = "/lab/tree/notebooks/sem/welcome.ipynb"


def _accept_kernel_dialog(page) -> None:
    """Accept a "Select Kernel" dialog if JupyterLab shows one (it should not)."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count() and dialog.first.is_visible():
        accept = dialog.locator("button.jp-mod-accept")
        if accept.count():
            accept.first.click()


def test_login_spawn_form_and_landing_notebook_in_a_browser(platform, browser):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    context, page, console_errors = new_page(browser, width=1400)
    try:
        # -- log in ------------------------------------------------------------------
        hub_login(page, platform.url, "alice", platform.secrets["user_password"])
        timings["login"] = time.monotonic() - t0

        # -- the spawn form ------------------------------------------------------------
        page.goto(f"{platform.url}/hub/spawn")
        form = page.locator(".dass-spawn-form")
        expect(form).to_be_visible()
        for stack in ("sem", "kmap", "stm"):
            expect(page.locator(f"input[type=radio][name=stack][value={stack}]")).to_have_count(1)
        expect(page.locator("select[name=size]")).to_be_visible()
        own = page.locator('fieldset.dass-proposal[data-proposal="p-2026-001"]')
        expect(own).to_be_visible()
        expect(own.locator(f'input[type=checkbox][name=datasets][value="{DATASET}"]')).to_have_count(1)
        expect(page.locator('fieldset.dass-proposal[data-proposal="p-2026-002"]')).to_have_count(0)
        expect(page.locator('input[name=datasets][value^="p-2026-002/"]')).to_have_count(0)

        page.check("input[type=radio][name=stack][value=sem]")
        page.select_option("select[name=size]", "small")
        page.check(f'input[type=checkbox][name=datasets][value="{DATASET}"]')
        expect(page.locator("input[name=stack][value=sem]")).to_be_checked()
        expect(page.locator("select[name=size]")).to_have_value("small")
        page.screenshot(path=str(ARTIFACTS / "browser-spawn-form.png"), full_page=True)
        timings["form"] = time.monotonic() - t0

        # the JupyterHub "Start" button of the options form
        page.locator("#spawn_form input[type=submit], #spawn_form button[type=submit]").first.click()

        # -- JupyterLab on the landing notebook -----------------------------------------
        page.wait_for_url(re.compile(re.escape(f"/user/alice{LANDING}") + r"(\?.*)?$"), timeout=platform.spawn_timeout * 1000)
        panel = page.locator(".jp-NotebookPanel")
        expect(panel).to_be_visible(timeout=platform.spawn_timeout * 1000)
        timings["lab"] = time.monotonic() - t0

        cell = panel.locator(".jp-CodeCell").filter(has_text="dass.data.datasets()").first
        expect(cell).to_be_visible(timeout=30_000)
        # wait until the notebook's kernel is connected and idle (the status bar says so)
        expect(page.locator(".jp-StatusBar-Widget").get_by_text(re.compile(r"Python 3.*\| Idle"))).to_be_visible(
            timeout=60_000)
        timings["kernel idle"] = time.monotonic() - t0
        prompt = cell.locator(".jp-InputPrompt")
        attempts = 0
        for attempts in range(1, 4):
            _accept_kernel_dialog(page)
            cell.locator(".jp-InputArea-editor").click()
            page.keyboard.press("Shift+Enter")
            _accept_kernel_dialog(page)
            try:  # "[*]" while it runs, "[1]" once done
                expect(prompt).to_contain_text(re.compile(r"\[[*0-9]+\]"), timeout=10_000)
                break
            except AssertionError:
                # JupyterLab dropped the run (its session was not attached to a kernel yet)
                print(f"run attempt {attempts}: the cell did not start; status bar:",
                      page.locator(".jp-StatusBar-Widget").all_inner_texts())
        output = cell.locator(".jp-OutputArea-output")
        expect(output.first).to_contain_text(DATASET, timeout=60_000)
        expect(prompt).to_contain_text(re.compile(r"\[[0-9]+\]"))
        timings["ran cell"] = time.monotonic() - t0
        timings["run attempts"] = attempts
        page.screenshot(path=str(ARTIFACTS / "browser-jupyterlab.png"))
        # nothing on stderr in the notebook (a traceback or warning would render as stderr)
        expect(panel.locator('[data-mime-type="application/vnd.jupyter.stderr"]')).to_have_count(0)
    except Exception:
        failure_screenshot(page, "browser-failure.png")
        raise
    finally:
        print("browser timings (s since start):", {k: round(v, 1) for k, v in timings.items()})
        if console_errors:
            print("browser console errors:", *console_errors[:20], sep="\n  ")
        context.close()
        platform.stop_server("alice")


PICKER_PROPOSAL = "p-2026-777"


def _visible_ids(scope) -> list[str]:
    return scope.locator(".dass-pick:visible input[name=datasets]").evaluate_all("cs => cs.map(c => c.value)")


def _check_picker(page, form_selector: str, ids: list[str], shot: str) -> None:
    """Search, filter, page and choose in the picker of one form; the form submits the choice."""
    from playwright.sync_api import expect

    picker = page.locator(f"{form_selector} .dass-picker")
    expect(picker).to_be_visible()
    own = picker.locator(f'fieldset.dass-proposal[data-proposal="{PICKER_PROPOSAL}"]')
    expect(own).to_be_visible()
    # every dataset is in the form, a page of 20 of the proposal's own shows, the groups are closed
    assert picker.locator("input[name=datasets]").count() >= len(ids)
    own_list = own.locator(":scope > .dass-list")
    assert len(_visible_ids(own_list)) == 20
    expect(own_list.locator(".dass-page")).to_have_text("page 1 of 10 (200)")
    uploads = own.locator('details.dass-group[data-group="uploads"]')
    expect(uploads.locator("summary")).to_contain_text("SEM uploads (80)")
    assert uploads.evaluate("d => !d.open") and _visible_ids(uploads) == []
    results = picker.locator('fieldset.dass-proposal[data-proposal="results"] details.dass-group[data-group="results"]')
    expect(results.locator("summary")).to_contain_text("Job results")
    # paging
    own_list.locator(".dass-next").click()
    expect(own_list.locator(".dass-page")).to_have_text("page 2 of 10 (200)")
    assert _visible_ids(own_list)[0] == f"{PICKER_PROPOSAL}/set-020"
    own_list.locator(".dass-next").click()
    own_list.locator(".dass-prev").click()
    page.check(f'input[name=datasets][value="{PICKER_PROPOSAL}/set-021"]')
    # search by text: words in any order, across the groups
    search = picker.locator(".dass-picker-text")
    search.fill("upload -00000011")  # words in any order: upload number 17 (0x11)
    expect(picker.locator(".dass-picker-filters .dass-picker-count")).to_have_text(re.compile(r"^1 of \d+ datasets match$"))
    expect(uploads.locator("summary")).to_contain_text("(1 of 80)")
    assert uploads.evaluate("d => d.open")
    assert _visible_ids(picker) == [_upload_17(ids)]
    page.check(f'input[name=datasets][value="{_visible_ids(picker)[0]}"]')
    search.press("Enter")  # filters; does not submit the form
    expect(picker).to_be_visible()
    # technique and date: STM series created in the first ten days of 2025
    search.fill("")
    picker.locator(".dass-picker-technique").select_option("STM")
    picker.locator(".dass-picker-from").fill("2025-01-01")
    picker.locator(".dass-picker-to").fill("2025-01-10")
    picker.locator(".dass-picker-to").dispatch_event("change")
    expect(picker.locator(".dass-picker-filters .dass-picker-count")).to_have_text(re.compile(r"^3 of \d+ datasets match$"))
    assert _visible_ids(picker) == [f"{PICKER_PROPOSAL}/set-{i:03d}" for i in (1, 4, 7)]
    picker.locator(".dass-picker-technique").select_option("")
    picker.locator(".dass-picker-from").fill("")
    picker.locator(".dass-picker-to").fill("")
    picker.locator(".dass-picker-to").dispatch_event("change")
    expect(picker.locator(".dass-picker-chosen")).to_contain_text(f"{PICKER_PROPOSAL}/set-021")
    # the screenshot a person on a laptop sees, and nothing wider than the screen
    page.screenshot(path=str(ARTIFACTS / shot))
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    submitted = page.evaluate(f"new FormData(document.querySelector({form_selector!r})).getAll('datasets')")
    assert sorted(submitted) == sorted([f"{PICKER_PROPOSAL}/set-021", _upload_17(ids)])


def _upload_17(ids):
    return next(i for i in ids if i.startswith(f"{PICKER_PROPOSAL}/sem-upload-") and i.endswith(f"-{17:08x}"))


def test_dataset_picker_scales_to_hundreds_of_datasets(platform, browser):
    """One proposal with 200 datasets, 80 SEM uploads and 40 job results: the spawn form and
    the jobs form share one picker (search, technique, date, groups, paging) at 1280×800."""
    import shutil

    from tests.support import seed_many_datasets

    repository = platform.state / "repository"
    ids = seed_many_datasets(repository, PICKER_PROPOSAL, own=200, uploads=80, results=40)
    context = None
    try:
        platform.rescan()
        platform.token_for("dana")  # creates the user; the group makes the proposal hers
        r = platform.api("POST", f"/groups/{PICKER_PROPOSAL}")
        assert r.status_code in (201, 409), r.text
        r = platform.api("POST", f"/groups/{PICKER_PROPOSAL}/users", json={"users": ["dana"]})
        assert r.status_code == 200, r.text
        context, page, console_errors = new_page(browser, width=1280, height=800)
        try:
            hub_login(page, platform.url, "dana", platform.secrets["user_password"])
            page.goto(f"{platform.url}/hub/spawn")
            _check_picker(page, "#spawn_form", ids, "picker-spawn-form.png")
            base = f"{platform.url}/services/dass/"
            page.goto(base + "jobs")
            page.wait_for_url(re.compile(re.escape(base) + r"jobs$"))
            _check_picker(page, "#job-form", ids, "picker-jobs-form.png")
            assert not console_errors, console_errors
        except Exception:
            failure_screenshot(page, "picker-failure.png")
            raise
    finally:
        if context is not None:
            context.close()
        shutil.rmtree(repository / PICKER_PROPOSAL, ignore_errors=True)
        for i in ids:
            if i.startswith("results/"):
                shutil.rmtree(repository / i, ignore_errors=True)
        platform.rescan()
