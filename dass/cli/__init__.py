"""The ``dass`` command line.

One module per command group, each with a ``register(subparsers)`` that adds its
sub-commands: :mod:`.platform` (``up``, ``service``, ``demo seed``), :mod:`.catalog`
(``catalog scan``), :mod:`.config` (``config reference``), :mod:`.jobs` (``jobs …``). The
analysis stacks add their own groups (``sem``, ``stm``) the same way: a stack names its
``register`` function in its definition (``cli: "dass.sem.cli:register"`` in ``stacks.yaml``),
and :func:`main` loads it through the stack registry, so this package never imports a stack.

Every command reads the one configuration file (``--config FILE`` / ``$DASS_CONFIG``) by the
rule of :mod:`dass.config`. Every error dass raises on purpose (a
:class:`~dass.errors.DassError`) ends the command with one line on stderr,
``dass: error: <what to fix>``, and exit status 2; never a traceback. Heavy imports happen
inside the commands, so ``dass --help`` is fast and never loads torch.
"""

from __future__ import annotations

from .config import config_classes, config_reference
from .main import CLIError, build_parser, main

__all__ = ["CLIError", "build_parser", "config_classes", "config_reference", "main"]
