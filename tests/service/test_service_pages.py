"""The home page and the browser login through the hub's OAuth."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import requests

from tests.service.service_support import CLIENT_ID, PREFIX


def oauth_login(service, hub, token: str) -> requests.Session:
    """Log a browser session in the way JupyterHub's OAuth does it, returning the session."""
    browser = requests.Session()
    r = browser.get(service.url + "?q=grain", allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    location = urlparse(r.headers["Location"])
    assert location.path == "/hub/api/oauth2/authorize"
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == PREFIX + "oauth_callback"
    assert params["response_type"] == "code"
    assert params["code_challenge_method"] == "S256"
    # the hub authorizes and sends the browser back with a code
    hub.codes["code-" + token] = token
    r = browser.get(
        service.url + "oauth_callback",
        params={"code": "code-" + token, "state": params["state"]},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 302, r.text
    assert r.headers["Location"] == PREFIX + "?q=grain"
    assert ("oauth2/token", "code-" + token) in hub.calls
    return browser


def test_home_redirects_a_browser_to_the_hub_login(service):
    r = service.get("")
    assert r.status_code == 302
    assert "/hub/api/oauth2/authorize?" in r.headers["Location"]


def test_oauth_login_then_cookie_authenticates_pages_and_api(service, hub):
    browser = oauth_login(service, hub, "alice-token")
    page = browser.get(service.url, timeout=10)
    assert page.status_code == 200
    assert "text/html" in page.headers["Content-Type"]
    assert '<strong id="user">alice</strong>' in page.text
    me = browser.get(service.url + "api/me", timeout=10)
    assert me.status_code == 200 and me.json()["name"] == "alice"


def test_home_lists_visible_datasets_by_proposal(service):
    page = service.get("", "alice-token")
    assert page.status_code == 200
    html = page.text
    assert 'id="proposal-p-2026-001"' in html
    assert "Copper and SiGe microstructure" in html  # the proposal's title
    assert "sem-grains" in html and "kmap-strain" in html and "public-tips" in html
    assert "stm-movie" not in html and "p-2026-002" not in html
    assert "embargoed" not in html
    assert '<form method="get" action="/services/dass/"' in html and 'name="q"' in html
    assert "api/openapi.json" in html
    assert "SEM image classification" in html  # a stack alice may use
    assert "STM movies" not in html  # restricted to p-2026-002 in the test config
    assert "<script" not in html and "http://" not in html and "https://" not in html  # no external assets


def test_pages_lead_back_to_the_hub_and_log_out(service):
    html = service.get("", "alice-token").text
    assert '<a href="/hub/home" id="nav-hub">Hub</a>' in html
    assert '<a href="/hub/logout" id="nav-logout">Log out</a>' in html


def test_datasets_are_pages_not_raw_json(service):
    home = service.get("", "alice-token").text
    assert 'href="/services/dass/datasets/p-2026-001/sem-grains"' in home
    page = service.get("datasets/p-2026-001/sem-grains", "alice-token")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    html = page.text
    assert '<code>p-2026-001/sem-grains</code>' in html and 'id="metadata"' in html
    assert 'href="/services/dass/api/datasets/p-2026-001/sem-grains" id="dataset-json"' in html
    assert "file://" not in html  # where the repository lives is not shown
    # another proposal's dataset answers the same 404 page as a missing one
    hidden = service.get("datasets/p-2026-002/stm-movie", "alice-token")
    missing = service.get("datasets/p-2026-002/no-such-dataset", "alice-token")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.text.replace("stm-movie", "X") == missing.text.replace("no-such-dataset", "X")


def test_home_search(service):
    html = service.get("", "alice-token", params={"q": "grain"}).text
    assert "sem-grains" in html and "kmap-strain" not in html
    assert 'value="grain"' in html
    html = service.get("", "alice-token", params={"q": "nothing-matches-this"}).text
    assert "No dataset you may see matches" in html


def test_home_escapes_the_query(service):
    html = service.get("", "alice-token", params={"q": '<script>alert("x")</script>'}).text
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_unknown_page_is_404_html(service):
    r = service.get("no-such-page")
    assert r.status_code == 404
    assert "text/html" in r.headers["Content-Type"]
    assert "404" in r.text


def test_oauth_callback_errors_are_pages(service):
    r = service.get("oauth_callback")
    assert r.status_code == 400
    assert "text/html" in r.headers["Content-Type"]
    assert "OAuth callback made without a token" in r.text
    r = service.get("oauth_callback", params={"code": "x", "state": "forged"})
    assert r.status_code == 403
    assert "oauth state does not match" in r.text


# -- the jobs pages ----------------------------------------------------------------------------

import re as _re  # noqa: E402

import nbformat as _nbformat  # noqa: E402
import pytest  # noqa: E402
from nbformat.v4 import new_code_cell as _new_code_cell, new_notebook as _new_notebook  # noqa: E402

from tests.service.service_support import start_idle_jobs_service  # noqa: E402

SEM_NOTEBOOK = "sem/service/image_summary.ipynb"


@pytest.fixture(scope="module")
def jobs_service(loop_thread, hub, tmp_path_factory):
    """A service of its own (own catalogue, own jobs folder) whose queue never starts a job:
    the pages are tested on QUEUED jobs, and no runner process is left behind."""
    svc = start_idle_jobs_service(loop_thread, hub.api_url, tmp_path_factory.mktemp("pages"))
    yield svc
    svc.stop()


def _xsrf_of(html: str) -> str:
    match = _re.search(r'name="_xsrf" value="([^"]+)"', html)
    assert match, "the page has no _xsrf form field"
    return match.group(1)


def _job_count(svc, token="alice-token") -> int:
    return svc.get("api/jobs", token).json()["total"]


def _form(**extra) -> dict:
    data = {"source": "service", "notebook": SEM_NOTEBOOK, "param.input_dataset": "p-2026-001/sem-grains",
            "param.max_images": "2", "param.thumbnail_px": "64", "stack": "", "size": "", "timeout": ""}
    data.update(extra)
    return data


def _upload_notebook(parameters: str) -> str:
    cell = _new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    return _nbformat.writes(_new_notebook(cells=[cell, _new_code_cell("print(n)")]))


def test_jobs_page_redirects_a_browser_to_the_hub_login(jobs_service):
    r = jobs_service.get("jobs")
    assert r.status_code == 302 and "/hub/api/oauth2/authorize?" in r.headers["Location"]


def test_jobs_page_form_offers_notebooks_fields_and_only_visible_datasets(jobs_service):
    r = jobs_service.get("jobs", "alice-token")
    assert r.status_code == 200 and "text/html" in r.headers["Content-Type"]
    html = r.text
    assert 'id="nav-jobs"' in html
    assert '<form id="job-form" method="post" action="/services/dass/jobs" enctype="multipart/form-data"' in html
    assert 'name="_xsrf"' in html
    # the first notebook (in name order) is shown, the others hidden until chosen
    assert '<fieldset class="params" data-notebook="sem/service/classify_dataset.ipynb">' in html
    assert f'data-notebook="{SEM_NOTEBOOK}" disabled hidden' in html
    assert 'data-notebook="kmap/service/scan_overview.ipynb" disabled hidden' in html
    assert "stm/service/" not in html  # stm is closed to alice in the test configuration
    assert 'name="param.max_images" step="1" value="50"' in html
    assert 'name="param.thumbnail_px"' in html
    assert '<select id="nb1-input_dataset" name="param.input_dataset">' in html
    for visible in ("p-2026-001/sem-grains", "p-2026-001/kmap-strain", "p-2025-009/public-tips"):
        assert f'<option value="{visible}"' in html
        assert f'name="datasets" value="{visible}"' in html
    assert "p-2026-002" not in html and "embargoed" not in html
    assert '<option value="sem">' in html and '<option value="stm">' not in html
    assert 'name="size"' in html and 'value="xl"' not in html  # xl is for staff only
    assert 'name="upload" accept=".ipynb' in html
    assert 'id="no-jobs"' in html
    assert "http://" not in html and "https://" not in html  # no external assets


def test_form_post_without_xsrf_token_is_refused(jobs_service, hub):
    browser = oauth_login(jobs_service, hub, "alice-token")
    page = browser.get(jobs_service.url + "jobs", timeout=10)
    assert page.status_code == 200
    xsrf = _xsrf_of(page.text)
    before = _job_count(jobs_service)
    for data in (_form(), _form(_xsrf="forged-token")):
        r = browser.post(jobs_service.url + "jobs", data=data, allow_redirects=False, timeout=10)
        assert r.status_code == 403, r.text
        assert "text/html" in r.headers["Content-Type"]
        assert "_xsrf" in r.text and "reload the page" in r.text
    r = browser.post(jobs_service.url + "jobs/inspect", files={"upload": ("a.ipynb", _upload_notebook("n = 1"))},
                     timeout=10)
    assert r.status_code == 403
    assert _job_count(jobs_service) == before  # nothing was queued
    # with the form's token the same browser submits
    r = browser.post(jobs_service.url + "jobs", data=_form(_xsrf=xsrf), allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text
    assert _re.fullmatch(r"/services/dass/jobs/[0-9a-f]{32}", r.headers["Location"])
    assert _job_count(jobs_service) == before + 1


def test_api_token_posts_need_no_xsrf_token(jobs_service):
    r = jobs_service.request("POST", "jobs", "alice-token", data=_form())
    assert r.status_code == 303, r.text
    r = jobs_service.request("POST", "api/jobs", "alice-token", json={"notebook": SEM_NOTEBOOK,
                             "parameters": {"input_dataset": "p-2026-001/sem-grains"}})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("change, status, field, kept", [
    ({"param.max_images": "many"}, 422, "max_images", 'name="param.max_images" step="1" value="many"'),
    ({"param.input_dataset": "p-2026-002/stm-movie"}, 403, "input_dataset", 'value="2"'),
    ({"timeout": "soon"}, 422, "timeout", 'value="soon"'),
    ({"stack": "stm"}, 403, "stack", '<option value="p-2026-001/sem-grains" selected>'),
    ({"size": "xl"}, 422, "size", 'name="param.thumbnail_px" step="1" value="64"'),
    ({"datasets": "p-2026-002/stm-movie"}, 403, "p-2026-002/stm-movie", 'value="2"'),
    ({"notebook": "sem/service/nope.ipynb"}, 422, "notebook", 'name="timeout"'),
])
def test_form_errors_rerender_the_form_naming_the_field_and_keeping_values(jobs_service, change, status, field, kept):
    before = _job_count(jobs_service)
    r = jobs_service.request("POST", "jobs", "alice-token", data=_form(**change))
    assert r.status_code == status, r.text
    html = r.text
    error = _re.search(r'<div class="error" id="form-error" role="alert">(.*?)</div>', html, _re.S)
    assert error, html
    assert field in error.group(1)
    assert kept in html
    assert "Traceback" not in html
    assert "p-2026-002/stm-movie</option>" not in html  # still only visible datasets offered
    assert _job_count(jobs_service) == before


def test_form_error_marks_the_field(jobs_service):
    html = jobs_service.request("POST", "jobs", "alice-token", data=_form(**{"param.max_images": "many"})).text
    assert '<div class="field invalid" data-param="max_images">' in html
    assert f'<fieldset class="params" data-notebook="{SEM_NOTEBOOK}">' in html  # the chosen one stays shown


def test_submitted_job_page_and_table(jobs_service):
    r = jobs_service.request("POST", "jobs", "alice-token", data=_form())
    assert r.status_code == 303
    job_id = r.headers["Location"].rsplit("/", 1)[-1]
    page = jobs_service.get(f"jobs/{job_id}", "alice-token")
    assert page.status_code == 200, page.text
    html = page.text
    assert '<span id="status" class="badge status-QUEUED">QUEUED</span>' in html
    assert 'id="cancel"' in html
    assert "<code>max_images</code></th><td><code>2</code>" in html
    assert "<code>input_dataset</code></th><td><code>&#34;p-2026-001/sem-grains&#34;</code>" in html
    assert '<code>p-2026-001/sem-grains</code>' in html
    assert '<pre id="log">' in html
    assert f'data-api="/services/dass/api/jobs/{job_id}/"' in html
    assert 'data-xsrf="' in html
    assert "<iframe" not in html  # not finished
    # the table lists it, newest first, with a badge; the status filter works
    table = jobs_service.get("jobs", "alice-token").text
    assert f'<tr class="job" data-job="{job_id}">' in table
    assert table.index(f'data-job="{job_id}"') < table.index('class="job"') + 200  # the first row
    assert '<span class="badge status-QUEUED">QUEUED</span>' in table
    assert f'data-job="{job_id}"' in jobs_service.get("jobs", "alice-token", params={"status": "queued"}).text
    assert f'data-job="{job_id}"' not in jobs_service.get("jobs", "alice-token", params={"status": "COMPLETED"}).text
    assert jobs_service.get("jobs", "alice-token", params={"status": "DONE"}).status_code == 400


def test_the_jobs_page_shows_each_jobs_sweep_and_one_sweeps_jobs_in_order(jobs_service):
    body = {"notebook": SEM_NOTEBOOK, "parameters": {"input_dataset": "p-2026-001/sem-grains"},
            "sweep": {"max_images": [1, 2, 3]}}
    sweep = jobs_service.request("POST", "api/sweeps", "alice-token", json=body).json()
    single = jobs_service.request("POST", "jobs", "alice-token", data=_form()).headers["Location"].rsplit("/", 1)[-1]
    jobs_service.request("POST", f"api/jobs/{sweep['jobs'][2]}/cancel", "alice-token")
    table = jobs_service.get("jobs", "alice-token").text
    link = f'href="/services/dass/jobs?sweep={sweep["id"]}"'
    assert table.count(link) == 3 and f"sweep <code>{sweep['id'][:8]}</code> #2" in table
    # one sweep: its jobs only, in its order, with its counts; the status filter keeps the sweep
    page = jobs_service.get("jobs", "alice-token", params={"sweep": sweep["id"]}).text
    rows = _re.findall(r'<tr class="job" data-job="([0-9a-f]+)">', page)
    assert rows == sweep["jobs"] and single not in page
    assert "3 jobs of sweep" in page and "3 jobs: 2 QUEUED, 1 STOPPED" in page
    assert f'<input type="hidden" name="sweep" value="{sweep["id"]}">' in page
    stopped = jobs_service.get("jobs", "alice-token", params={"sweep": sweep["id"], "status": "STOPPED"}).text
    assert _re.findall(r'<tr class="job" data-job="([0-9a-f]+)">', stopped) == [sweep["jobs"][2]]
    # an element's own page names its sweep
    element = jobs_service.get(f"jobs/{sweep['jobs'][1]}", "alice-token").text
    assert f'element #1 of <a {link}>sweep <code>{sweep["id"][:8]}</code></a>' in element
    assert 'id="sweep"' not in jobs_service.get(f"jobs/{single}", "alice-token").text
    # another user's sweep is the 404 of a missing one
    theirs = jobs_service.get("jobs", "bob-token", params={"sweep": sweep["id"]})
    missing = jobs_service.get("jobs", "bob-token", params={"sweep": "0" * 32})
    assert theirs.status_code == missing.status_code == 404 and "text/html" in theirs.headers["Content-Type"]
    assert theirs.text.replace(sweep["id"], "X") == missing.text.replace("0" * 32, "X")  # nothing told


def test_other_users_job_page_is_the_404_of_a_missing_job(jobs_service):
    r = jobs_service.request("POST", "jobs", "alice-token", data=_form())
    job_id = r.headers["Location"].rsplit("/", 1)[-1]
    theirs = jobs_service.get(f"jobs/{job_id}", "bob-token")
    missing = jobs_service.get(f"jobs/{'0' * 32}", "bob-token")
    assert theirs.status_code == missing.status_code == 404
    assert "text/html" in theirs.headers["Content-Type"]
    assert theirs.text.replace(job_id, "X") == missing.text.replace("0" * 32, "X")
    assert f'data-job="{job_id}"' not in jobs_service.get("jobs", "bob-token").text
    # the admin sees it, with its owner
    assert jobs_service.get(f"jobs/{job_id}", "carol-token").status_code == 200
    assert "<th>owner</th>" in jobs_service.get("jobs", "carol-token").text


def test_upload_inspect_then_submit_and_error_keeps_the_notebook(jobs_service, hub):
    browser = oauth_login(jobs_service, hub, "alice-token")
    xsrf = _xsrf_of(browser.get(jobs_service.url + "jobs", timeout=10).text)
    text = _upload_notebook("n: int = None  # how many\nlabel = 'run'\nsource_dataset = ''  # dataset: input")
    r = browser.post(jobs_service.url + "jobs/inspect", data={"_xsrf": xsrf},
                     files={"upload": ("my analysis.ipynb", text)}, timeout=10)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["name"] == "my_analysis.ipynb"
    assert [f["name"] for f in answer["fields"]] == ["n", "label", "source_dataset"]
    assert 'name="param.n"' in answer["html"] and "required" in answer["html"]
    assert '<option value="p-2026-001/sem-grains">' in answer["html"] and "p-2026-002" not in answer["html"]
    bad = browser.post(jobs_service.url + "jobs/inspect", headers={"X-XSRFToken": xsrf},
                       files={"upload": ("x.ipynb", "{not json")}, timeout=10)
    assert bad.status_code == 422 and bad.json()["field"] == "upload"
    # submit without the required n: the form comes back with the notebook kept
    data = {"_xsrf": xsrf, "source": "upload", "param.label": "mine", "stack": "sem"}
    r = browser.post(jobs_service.url + "jobs", data=data, files={"upload": ("my analysis.ipynb", text)},
                     allow_redirects=False, timeout=10)
    assert r.status_code == 422, r.text
    assert "field <code>n</code>" in r.text and "required" in r.text
    assert 'name="upload_name" value="my_analysis.ipynb"' in r.text
    assert 'name="param.label" value="mine"' in r.text
    assert '<fieldset class="params" id="upload-params" data-notebook="">' in r.text
    # resubmit with the kept notebook (no file chosen again)
    kept = _re.search(r'<textarea name="upload_text" hidden>(.*?)</textarea>', r.text, _re.S).group(1)
    import html as _html

    data.update({"param.n": "3", "upload_name": "my_analysis.ipynb", "upload_text": _html.unescape(kept)})
    r = browser.post(jobs_service.url + "jobs", data=data, files={"upload": ("", b"")}, allow_redirects=False,
                     timeout=10)
    assert r.status_code == 303, r.text
    job = jobs_service.get("api/jobs/" + r.headers["Location"].rsplit("/", 1)[-1], "alice-token").json()
    assert job["notebook"] == "upload:my_analysis.ipynb" and job["parameters"] == {"n": 3, "label": "mine"}
    assert job["stack"] == "sem"


def test_upload_that_is_not_a_notebook_is_refused_on_the_form(jobs_service):
    r = jobs_service.request("POST", "jobs", "alice-token", data={"source": "upload"},
                             files={"upload": ("x.ipynb", b"{not json")})
    assert r.status_code == 422 and "not a valid Jupyter notebook" in r.text
    r = jobs_service.request("POST", "jobs", "alice-token", data={"source": "upload"})
    assert r.status_code == 422 and "choose a notebook file" in r.text


def test_page_scripts_reach_the_api_with_the_cookie_and_the_xsrf_header(jobs_service, hub):
    """What the job page's JavaScript does: fetch the log and cancel with the OAuth cookie
    and the X-XSRFToken header; without the header HubOAuth ignores the cookie."""
    browser = oauth_login(jobs_service, hub, "alice-token")
    page = browser.get(jobs_service.url + "jobs", timeout=10)
    xsrf = _xsrf_of(page.text)
    r = browser.post(jobs_service.url + "jobs", data=_form(_xsrf=xsrf), allow_redirects=False, timeout=10)
    job_id = r.headers["Location"].rsplit("/", 1)[-1]
    job_page = browser.get(jobs_service.url + f"jobs/{job_id}", timeout=10).text
    token = _re.search(r'data-xsrf="([^"]+)"', job_page).group(1)
    fetch = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}
    log = browser.get(jobs_service.url + f"api/jobs/{job_id}/log?offset=0", headers=fetch, timeout=10)
    assert log.status_code == 401  # a cross-site script could not read it either
    log = browser.get(jobs_service.url + f"api/jobs/{job_id}/log?offset=0",
                      headers={**fetch, "X-XSRFToken": token}, timeout=10)
    assert log.status_code == 200 and log.headers["X-Dass-Job-Status"] == "QUEUED"
    r = browser.post(jobs_service.url + f"api/jobs/{job_id}/cancel", headers=fetch, timeout=10)
    assert r.status_code == 401
    r = browser.post(jobs_service.url + f"api/jobs/{job_id}/cancel", headers={**fetch, "X-XSRFToken": token},
                     timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "STOPPED"
    page = browser.get(jobs_service.url + f"jobs/{job_id}", timeout=10).text
    assert '<span id="status" class="badge status-STOPPED">STOPPED</span>' in page
    assert 'id="cancel"' not in page and "cancelled by alice before it started" in page
