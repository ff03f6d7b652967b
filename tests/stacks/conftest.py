"""A catalogue of the demo repository, shared by the selection and session tests."""

import datetime

import fsspec
import pytest
from traitlets.config import Config

from dass.data.catalog import Catalog
from dass.data.storage import Storage
from dass.demo import seed

TODAY = datetime.date(2026, 11, 22)


@pytest.fixture(scope="package")
def catalog(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repo")
    seed(fsspec.filesystem("file"), str(tmp / "repo"), today=TODAY)
    cfg = Config()
    cfg.Storage.url = f"file://{tmp / 'repo'}"
    cfg.Catalog.db_url = f"sqlite:///{tmp / 'catalog.sqlite'}"
    cat = Catalog(config=cfg)
    cat.upgrade()
    report = cat.scan(Storage(config=cfg))
    assert not report.errors
    return cat
