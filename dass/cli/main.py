"""``dass``: the parser, the stacks' command groups and the one mapping of errors to exit codes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import DassError
from .errors import CLIError

__all__ = ["CLIError", "build_parser", "main"]

#: The command groups of the platform itself, each a module of this package with ``register``.
CORE_GROUPS = ("platform", "catalog", "config", "jobs")


def _core_registers() -> list[Any]:
    from . import catalog, config, jobs, platform

    modules = {"platform": platform, "catalog": catalog, "config": config, "jobs": jobs}
    return [modules[name].register for name in CORE_GROUPS]


def build_parser(config: Any = None) -> argparse.ArgumentParser:
    """The ``dass`` parser: the platform's command groups, then those of the stacks.

    Parameters
    ----------
    config : traitlets.config.Config, optional
        The configuration in force; its ``c.StackRegistry.stacks`` decide which stacks add
        command groups (default: the file of ``$DASS_CONFIG``, else the built-in stacks).
    """
    from ..config import load_config
    from ..stacks.registry import StackRegistry

    parser = argparse.ArgumentParser(prog="dass", description="dass: data analysis as a service")
    parser.add_argument("--config", help="the dass config file (default: $DASS_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _core_registers():
        register(sub)
    registry = StackRegistry(config=config if config is not None else load_config())
    for _spec, register in registry.plugins("cli"):
        register(sub)
    return parser


def _config_file(argv: list[str]) -> str | None:
    """The ``--config`` of a command line, read before the parser exists (it decides which
    stacks add command groups)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    return known.config


def main(argv: list[str] | None = None) -> int:
    """Run one ``dass`` command; the exit status is 0, the command's own (1: partly done),
    2 for a :class:`~dass.errors.DassError` (one line on stderr) or 130 after Ctrl-C."""
    from ..config import load_config

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(load_config(_config_file(argv)))
        args = parser.parse_args(argv)
        return args.func(args)
    except DassError as e:
        print(f"dass: error: {e.log_message}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
