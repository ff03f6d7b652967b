"""The dataset picker's pure builder, by value, and its template rendered with many datasets."""

from __future__ import annotations

import re
from types import SimpleNamespace

import jinja2

from dass.hub.picker import PickerGroup, PickerItem, PickerProposal, picker_proposals, picker_techniques


def rec(proposal, name, title=None, technique="SEM", created="2026-01-02", **kw):
    return SimpleNamespace(
        id=f"{proposal}/{name}", proposal=proposal, name=name, title=title or name, technique=technique,
        keywords=kw.pop("keywords", ()), instrument=kw.pop("instrument", None),
        public=kw.pop("public", False), synthetic=kw.pop("synthetic", False),
        metadata={"dates": {"created": created}} if created else {},
    )


def test_proposals_own_datasets_first_uploads_and_results_grouped_newest_first():
    records = [
        rec("p-2", "sem-upload-20260301-aaaa0001", "Upload 1", created="2026-03-01"),
        rec("p-2", "grains", "Grains", keywords=("Au", "annealed"), instrument="Zeiss Gemini"),
        rec("p-2", "sem-upload-20260305-bbbb0002", "Upload 2", created="2026-03-05"),
        rec("p-1", "movie", "A movie", technique="STM", created=None, public=True),
        rec("results", "job-0001", "Result 1", technique=None, created="2026-04-01"),
        rec("p-2", "Alpha", "alpha"),
    ]
    out = picker_proposals(records, {"p-2": "Gold"})
    assert [p.id for p in out] == ["p-1", "p-2", "results"]
    p1, p2, results = out
    assert p1 == PickerProposal("p-1", "", (
        PickerItem("p-1/movie", "A movie", "STM", "", True, False, "p-1/movie a movie"),), ())
    assert p2.title == "Gold" and p2.count == 4
    assert [i.id for i in p2.items] == ["p-2/Alpha", "p-2/grains"]  # by title, case-insensitive
    assert p2.items[1].search == "p-2/grains grains au annealed zeiss gemini"
    assert p2.groups == (PickerGroup("uploads", "SEM uploads", (
        PickerItem("p-2/sem-upload-20260305-bbbb0002", "Upload 2", "SEM", "2026-03-05", False, False,
                   "p-2/sem-upload-20260305-bbbb0002 upload 2"),
        PickerItem("p-2/sem-upload-20260301-aaaa0001", "Upload 1", "SEM", "2026-03-01", False, False,
                   "p-2/sem-upload-20260301-aaaa0001 upload 1"),
    )),)
    assert results.items == () and [g.key for g in results.groups] == ["results"]
    assert picker_techniques(out) == ["SEM", "STM"]
    assert picker_proposals([]) == []


def _render_form(proposals, chosen=()):
    env = jinja2.Environment(loader=jinja2.PackageLoader("dass.hub", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template("spawn_form.html").render(
        stacks=[], sizes=[], chosen_stack="", chosen_size="", chosen_datasets=set(chosen),
        proposals=proposals, techniques=picker_techniques(proposals), max_datasets=8, size_note="")


def test_the_form_offers_every_dataset_as_a_checkbox_and_opens_groups_with_a_choice():
    records = [rec("p-1", f"sem-upload-202603{d:02d}-{i:08x}", created=f"2026-03-{d:02d}")
               for i, d in enumerate(range(1, 29))] * 1
    records += [rec("p-1", f"set-{i:03d}", f"Set {i}") for i in range(300)]
    chosen = {"p-1/set-007", records[3].id}
    html = _render_form(picker_proposals(records), chosen)
    offered = re.findall(r'name="datasets" value="([^"]+)"', html)
    assert sorted(offered) == sorted(r.id for r in records)
    checked = set(re.findall(r'name="datasets" value="([^"]+)" checked', html))
    assert checked == chosen
    assert '<details class="dass-group" data-group="uploads" open>' in html
    assert 'data-page-size="20"' in html and 'data-max="8"' in html


def test_the_form_says_when_there_is_nothing_to_choose():
    html = _render_form([])
    assert "No dataset is available to you yet. You can still start a session." in html
    assert 'name="datasets"' not in html
