"""``dass stm annotate``: the STM stack's command group (``cli: dass.stm.cli:register``).

Only :mod:`argparse` is needed to register it; the STM libraries load when the command runs.
Errors are :class:`~dass.errors.DassError` s, which ``dass`` prints as one line with exit
status 2.
"""

from __future__ import annotations

import sys
from typing import Any

from ..errors import DassError

__all__ = ["register"]


class AnnotateError(DassError, status=422):
    """``dass stm annotate`` cannot run: the dataset or the logbook is not usable."""


def _cmd_stm_annotate(args) -> int:
    from tqdm import tqdm

    from ..config import load_config
    from ..data.catalog import Catalog
    from ..data.storage import Storage
    from .catalog import annotate_dataset
    from .logbook import read_logbook

    config = load_config(args.config)
    storage = Storage(config=config)
    catalog = Catalog(config=config)
    catalog.upgrade()
    try:
        logbook = read_logbook(args.logbook) if args.logbook else None
        bar = tqdm(desc="STM files", unit="file", file=sys.stderr)

        def progress(done: int, total: int, name: str) -> None:
            bar.total = total
            bar.n = done
            bar.set_postfix_str(name[-40:])
            bar.refresh()

        report = annotate_dataset(storage, catalog, args.dataset, logbook=logbook, by=args.by,
                                  write_h5=args.write_h5, progress=progress)
        bar.close()
    except (ValueError, FileNotFoundError) as e:  # the logbook's and annotate's own refusals
        if isinstance(e, DassError):
            raise
        raise AnnotateError(str(e)) from None
    print(f"{report['dataset']}: metadata of {len(report['described'])} STM file(s) stored in dataset.json")
    for name, reason in report["unreadable"].items():
        print(f"  unreadable: {name}: {reason}")
    for name, count in report["matched"].items():
        print(f"  {name}: {count} preparation step(s) from the logbook")
    for name in report["written_h5"]:
        print(f"  {name}: steps written to /dass_logbook (raw /data unchanged)")
    return 1 if report["unreadable"] else 0


def register(sub: Any) -> None:
    """Add the ``stm`` command group to the sub-parsers of the ``dass`` parser."""
    stm = sub.add_parser("stm", help="STM data").add_subparsers(dest="sub", required=True)
    p = stm.add_parser(
        "annotate",
        help="store the normalized metadata of a dataset's FAST/.sxm/.dat files (and the matched "
             "steps of a sample-preparation logbook) in its catalogue metadata",
    )
    p.add_argument("dataset", help="<proposal>/<dataset> in the repository (c.Storage.url)")
    p.add_argument("--logbook", help="sample-preparation logbook, CSV or YAML (see docs/stm-logbook.md)")
    p.add_argument("--by", default="auto", choices=["auto", "sample", "time", "both"],
                   help="match logbook steps to files by sample name, time or both (default: auto)")
    p.add_argument("--write-h5", action="store_true",
                   help="also write the matched steps into each FAST file's /dass_logbook group")
    p.set_defaults(func=_cmd_stm_annotate)
