"""One exception root: every error class of dass is a DassError, next to the builtin it was."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from dass.errors import DassError

PACKAGE = Path(__file__).resolve().parents[1] / "dass"


def _error_classes() -> list[tuple[str, str]]:
    """(module, class) of every class in dass whose name ends in Error or Exception, or that
    derives from one written so (found in the source, so a new one cannot be forgotten)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            bases = [ast.unparse(b) for b in node.bases]
            if node.name.endswith(("Error", "Exception", "Failed", "Unavailable", "UnknownUser")) or any(
                b.endswith(("Error", "Exception")) for b in bases
            ):
                found.append((module, node.name))
    return found


ERROR_CLASSES = _error_classes()


def test_the_scan_finds_the_known_roots():
    names = {name for _, name in ERROR_CLASSES}
    assert {"DassDataError", "KmapInputError", "StmFileError", "JobRequestError", "LabelError",
            "HubLookupError", "ApiError", "CLIError", "ConfigFileError", "ModelUnavailable"} <= names
    assert len(ERROR_CLASSES) >= 36


@pytest.mark.parametrize("module, name", ERROR_CLASSES, ids=[f"{m}.{n}" for m, n in ERROR_CLASSES])
def test_every_error_class_is_a_dass_error(module, name):
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        pytest.skip(f"{module}.{name} is not an exception class")
    assert issubclass(cls, DassError), f"{module}.{name} must derive from dass.errors.DassError"
    assert 400 <= cls.status <= 599


@pytest.mark.parametrize("module, name, builtin", [
    ("dass.kmap.errors", "KmapInputError", ValueError),
    ("dass.kmap.errors", "KmapProcessingError", RuntimeError),
    ("dass.stm.errors", "StmFileError", ValueError),
    ("dass.stm.process", "ProcessingError", RuntimeError),
    ("dass.sem.io", "SemReadError", ValueError),
    ("dass.jobs.params", "ParameterError", ValueError),
    ("dass.stacks.selection", "SelectionError", ValueError),
])
def test_existing_except_clauses_still_catch(module, name, builtin):
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, builtin) and issubclass(cls, DassError)


def test_status_and_messages():
    from dass.data.errors import DassDataError, MetadataError, StorageError
    from dass.stacks.selection import SelectionError
    from dass.jobs.manager import JobRequestError
    from dass.kmap.errors import KmapInputError
    from dass.service.auth import HubUnavailable, UnknownUser

    e = DassDataError("database sqlite:////srv/dass/catalog.sqlite is locked")
    assert e.status == 503 and "/srv/dass" not in e.user_message and "/srv/dass" in e.log_message
    assert "storage" in StorageError("s3://bucket: 403").user_message
    m = MetadataError("file:///srv/repo/p/d/dataset.json", "title", "is required")
    assert m.status == 422 and m.user_message == "title: is required" and "/srv/repo" in str(m)
    assert SelectionError("no", field="stack").status == 400
    assert SelectionError("not yours", field="datasets", forbidden=True).status == 403
    assert (JobRequestError(404, "job x not found").status, JobRequestError(404, "job x not found").user_message) \
        == (404, "job x not found")
    k = KmapInputError("missing", file="m.h5", entry="1.1", field="measurement/imgnr")
    assert k.status == 422 and k.user_message == str(k) and k.file == "m.h5"
    assert (HubUnavailable.status, UnknownUser.status) == (503, 401)
    assert DassError("x").exit_code == 2


def test_instance_status_and_user_message_override_the_class():
    e = DassError("disk /srv full", status=507, user_message="no space left; tell an administrator")
    assert (e.status, e.user_message, e.log_message) == (507, "no space left; tell an administrator", "disk /srv full")
    assert DassError.status == 500


def test_errors_still_pickle():
    import pickle

    from dass.data.errors import MetadataError
    from dass.sem.io import SemReadError

    for err in (MetadataError("p", "f", "m"), SemReadError("a.tif: not a TIFF"), DassError("x", status=404)):
        again = pickle.loads(pickle.dumps(err))
        assert type(again) is type(err) and str(again) == str(err)
