"""``dass catalog scan``: index the repository's ``dataset.json`` files into the catalogue."""

from __future__ import annotations

import sys
from typing import Any


def _cmd_catalog_scan(args) -> int:
    from ..config import load_config
    from ..data.catalog import Catalog
    from ..data.storage import Storage

    config = load_config(args.config)
    storage = Storage(config=config)
    storage.check()
    catalog = Catalog(config=config)
    catalog.upgrade()
    report = catalog.scan(storage)
    print(report)
    for err in report.errors:
        print(f"  error: {err}", file=sys.stderr)
    return 1 if report.errors else 0


def register(sub: Any) -> None:
    """Add ``catalog scan``."""
    cat = sub.add_parser("catalog", help="the dataset catalogue").add_subparsers(dest="sub", required=True)
    p = cat.add_parser("scan", help="index the repository's dataset.json files into the catalogue")
    p.set_defaults(func=_cmd_catalog_scan)
