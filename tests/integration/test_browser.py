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
