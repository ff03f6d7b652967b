"""The shared ground of sessions and jobs: stacks, sizes, the validated selection, run specs.

- :mod:`.registry`: the stacks and sizes (built-ins in ``stacks.yaml``, merged with the
  deployer's ``c.StackRegistry``);
- :mod:`.selection`: validating a stack × size × datasets choice (:class:`SelectionError`);
- :mod:`.runtime`: pure builders of thread variables and limits;
- :mod:`.session`: :class:`SessionSpec`, what every spawner back end renders.

The hub package (sessions) and the jobs package both depend on this one, never on each other.
"""

from .registry import Size, Stack, StackConfigError, StackRegistry
from .selection import Selection, SelectionError, validate_selection

__all__ = ["Selection", "SelectionError", "Size", "Stack", "StackConfigError", "StackRegistry", "validate_selection"]
