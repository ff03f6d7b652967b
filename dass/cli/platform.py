"""``dass up``, ``dass service`` and ``dass demo seed``: the platform on one machine."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import DassError
from .errors import CLIError


def _cmd_up(args) -> int:
    from ..platform import up

    up(args.config)
    return 0  # not reached: up() execs the hub


def _cmd_service(args) -> int:
    from ..service.app import main

    main(["--config", args.config] if args.config else [])
    return 0


def _cmd_demo_seed(args) -> int:
    from ..config import load_config
    from ..data.storage import Storage
    from ..demo import seed

    storage = Storage(config=load_config(args.config))
    storage.fs.makedirs(storage.root, exist_ok=True)
    try:
        written = seed(storage.fs, storage.root, overwrite=args.overwrite, sem_model=args.sem_model)
    except DassError as e:
        if not type(e).__module__.startswith("dass.sem."):
            raise  # the repository's own message
        # training or registering the demo classifier
        raise CLIError(f"demo SEM model: {e}") from None
    print(f"wrote {len(written)} datasets into {storage.url}")
    return 0


def register(sub: Any) -> None:
    """Add ``up``, ``service`` and ``demo seed``."""
    p = sub.add_parser("up", help="start the platform on one machine (hub, proxy, dass service)")
    p.set_defaults(func=_cmd_up)

    p = sub.add_parser("service", help="run the dass service (normally started by the hub)")
    p.set_defaults(func=_cmd_service)

    demo = sub.add_parser("demo", help="demo data").add_subparsers(dest="sub", required=True)
    p = demo.add_parser("seed", help="write the synthetic demo repository into c.Storage.url")
    p.add_argument("--overwrite", action="store_true", help="rewrite existing demo datasets")
    p.add_argument("--sem-model", action=argparse.BooleanOptionalAction, default=True,
                   help="register the demo SEM classifier (trained on SYNTHETIC images once per machine, "
                        "then cached) as the default model when the repository has none (default: yes)")
    p.set_defaults(func=_cmd_demo_seed)
