"""The dataset picker shared by the spawn form and the jobs form.

A proposal may hold hundreds of datasets, most of them SEM uploads (``sem-upload-…``) and job
results (``job-…`` in the results folder). :func:`picker_proposals` (pure, tested by value)
sorts the datasets a user may see into proposals, each with its own datasets listed first
and the uploads and job results in collapsed groups; the macro ``dataset_picker`` of
``templates/dataset_picker.html`` renders them as checkboxes named ``datasets`` (so both forms
submit what they always did) with a search by text, technique and date and paging, done in
the browser. Both the hub (spawn form) and the dass service (jobs page) load that template.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: (group key, label, dataset name prefix): datasets that collapse into a group of their proposal
GROUPS: tuple[tuple[str, str, str], ...] = (
    ("uploads", "SEM uploads", "sem-upload-"),
    ("results", "Job results", "job-"),
)
#: datasets shown per page of one list
PAGE_SIZE = 20


@dataclass(frozen=True)
class PickerItem:
    """One dataset as the picker shows it."""

    id: str
    title: str
    technique: str
    date: str  # the dataset's creation date, YYYY-MM-DD ("" when unknown)
    public: bool
    synthetic: bool
    search: str  # lower-case text the search box matches: id, title, keywords, instrument


@dataclass(frozen=True)
class PickerGroup:
    key: str
    label: str
    items: tuple[PickerItem, ...]


@dataclass(frozen=True)
class PickerProposal:
    id: str
    title: str
    items: tuple[PickerItem, ...]  # the proposal's own datasets
    groups: tuple[PickerGroup, ...] = field(default_factory=tuple)  # uploads, results (non-empty ones)

    @property
    def count(self) -> int:
        return len(self.items) + sum(len(g.items) for g in self.groups)


def _date(metadata: Mapping[str, Any]) -> str:
    dates = metadata.get("dates") if isinstance(metadata, Mapping) else None
    created = dates.get("created") if isinstance(dates, Mapping) else None
    return str(created)[:10] if created else ""


def picker_item(record: Any) -> PickerItem:
    """A catalogue record (:class:`~dass.data.catalog.DatasetRecord` or alike) as a picker item."""
    keywords = " ".join(getattr(record, "keywords", ()) or ())
    text = " ".join(
        str(x) for x in (record.id, record.title, keywords, getattr(record, "instrument", "") or "") if x
    )
    return PickerItem(
        id=record.id,
        title=record.title or record.name,
        technique=getattr(record, "technique", None) or "",
        date=_date(getattr(record, "metadata", {}) or {}),
        public=bool(getattr(record, "public", False)),
        synthetic=bool(getattr(record, "synthetic", False)),
        search=text.lower(),
    )


def picker_proposals(records: Iterable[Any], titles: Mapping[str, str] | None = None) -> list[PickerProposal]:
    """Sort datasets into proposals for the picker.

    Parameters
    ----------
    records : iterable of DatasetRecord
        The datasets the user may see (any order).
    titles : mapping, optional
        Proposal id -> proposal title.

    Returns
    -------
    list of PickerProposal
        By proposal id; in each, the proposal's own datasets by title, then the non-empty
        groups of :data:`GROUPS`, newest first (their names start with the date or job id).
    """
    titles = titles or {}
    by_proposal: dict[str, list[Any]] = {}
    for r in records:
        by_proposal.setdefault(r.proposal, []).append(r)
    out = []
    for proposal in sorted(by_proposal):
        own: list[PickerItem] = []
        grouped: dict[str, list[tuple[Any, PickerItem]]] = {key: [] for key, _, _ in GROUPS}
        for r in by_proposal[proposal]:
            item = picker_item(r)
            key = next((k for k, _, prefix in GROUPS if r.name.startswith(prefix)), None)
            if key is None:
                own.append(item)
            else:
                grouped[key].append((r, item))
        own.sort(key=lambda i: (i.title.lower(), i.id))
        groups = tuple(
            PickerGroup(key, label, tuple(i for _, i in sorted(grouped[key], key=lambda ri: (ri[1].date, ri[0].name),
                                                               reverse=True)))
            for key, label, _ in GROUPS
            if grouped[key]
        )
        out.append(PickerProposal(proposal, titles.get(proposal, "") or "", tuple(own), groups))
    return out


def picker_techniques(proposals: Iterable[PickerProposal]) -> list[str]:
    """The techniques present, for the picker's technique filter."""
    found = set()
    for p in proposals:
        for item in p.items:
            found.add(item.technique)
        for g in p.groups:
            found.update(i.technique for i in g.items)
    return sorted(t for t in found if t)
