"""Where a run goes on a cluster: the partition (queue) of a user, from their hub groups.

Shared by the Slurm back ends of sessions (:mod:`dass.hub.slurm`) and jobs
(:mod:`dass.jobs.slurm`), so one rule places both.
"""

from __future__ import annotations

from typing import Iterable, Mapping


def choose_partition(groups: Iterable[str], by_group: Mapping[str, str], default: str) -> str:
    """The partition of a user in ``groups``: that of the first entry of ``by_group`` (in its
    order) naming one of their groups, else ``default``.

    Examples
    --------
    >>> choose_partition(["p-1", "beamline"], {"staff": "long", "beamline": "gpu"}, "short")
    'gpu'
    >>> choose_partition([], {"staff": "long"}, "short")
    'short'
    """
    mine = set(groups)
    for group, partition in by_group.items():
        if group in mine:
            return partition
    return default
