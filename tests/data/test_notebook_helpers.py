"""dass.data.notebook: the helpers the stacks' notebooks share, on real datasets in folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dass.data.notebook import ProgressBar, file_names, files_overview, find_files, progress_bar, read_files
from dass.data.session import Dataset


def _dataset(root: Path, dataset_id: str, files: dict[str, bytes], **metadata) -> Dataset:
    folder = root / dataset_id
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    meta = {"title": f"title of {dataset_id}", **metadata}
    (folder / "dataset.json").write_text(json.dumps(meta))
    proposal, name = dataset_id.split("/")
    return Dataset(id=dataset_id, proposal=proposal, name=name, url=folder.as_uri(), path=folder, metadata=meta)


@pytest.fixture
def two(tmp_path):
    a = _dataset(tmp_path, "p1/a", {"b.TIF": b"1", "a.png": b"2", "raw/c.tif": b"3", "notes.txt": b"4"}, synthetic=True)
    b = _dataset(tmp_path, "p1/b", {"scan_master.h5": b"5", "x.tiff": b"6"})
    return [a, b]


def test_find_files_matches_endings_without_case_in_dataset_then_name_order(two):
    found = find_files(two, (".tif", ".tiff", ".png"))
    assert [(d.id, name) for d, name in found] == [
        ("p1/a", "a.png"), ("p1/a", "b.TIF"), ("p1/a", "raw/c.tif"), ("p1/b", "x.tiff"),
    ]
    assert [(d.id, n) for d, n in find_files(two, "_master.h5")] == [("p1/b", "scan_master.h5")]
    assert find_files(two, ".nxs") == []
    assert find_files([], ".h5") == []


def test_find_files_needs_a_suffix(two):
    with pytest.raises(ValueError, match="at least one suffix"):
        find_files(two, ())


def test_file_names_of_one_dataset_or_a_message_naming_it(two):
    assert file_names(two[0], ".tif", what="TIFF", fix="choose another") == ["b.TIF", "raw/c.tif"]
    with pytest.raises(ValueError) as err:
        file_names(two[1], ".png", what="PNG image", fix="choose an SEM dataset")
    assert str(err.value) == "p1/b holds no PNG image: choose an SEM dataset"


def test_files_overview_lists_each_dataset_with_its_top_level_names(two):
    assert files_overview(two).splitlines() == [
        "p1/a: title of p1/a",
        "    (synthetic demo data, not a measurement)",
        "     a.png",
        "     b.TIF",
        "     dataset.json",
        "     notes.txt",
        "     raw",
        "p1/b: title of p1/b",
        "     dataset.json",
        "     scan_master.h5",
        "     x.tiff",
    ]
    assert files_overview([]) == ""


def test_read_files_in_the_order_given(two):
    assert read_files(two[0], ["raw/c.tif", "a.png"]) == [b"3", b"2"]
    with pytest.raises(FileNotFoundError):
        read_files(two[0], ["missing.png"])


def test_progress_bar_follows_both_callback_kinds():
    with progress_bar("steps") as bar:
        assert isinstance(bar, ProgressBar)
        bar.steps(3, 10, "epoch 1: loss 0.5")
        assert (bar.bar.n, bar.bar.total) == (3, 10)
        assert "epoch 1" in bar.bar.postfix
    with progress_bar("KMAP", unit="%", total=100) as bar:
        bar.fraction(0.257, "fit")
        assert bar.bar.n == 26 and bar.bar.postfix == "fit"
