"""Where a run goes on a cluster: the partition (queue) of a user, from their hub groups.

Shared by the Slurm back ends of sessions (:mod:`dass.hub.slurm`) and jobs
(:mod:`dass.jobs.slurm`), so one rule and one pair of settings place both
(:class:`SlurmPlacement`).
"""

from __future__ import annotations

from typing import Iterable, Mapping

from traitlets import Dict, Unicode
from traitlets.config import Configurable


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


class SlurmPlacement(Configurable):
    """The Slurm partition of sessions and jobs, by the user's hub groups.

    ``c.SlurmPlacement.partition`` and ``c.SlurmPlacement.partitions_by_group`` place both
    sessions (``DassSlurmSpawner``) and jobs (``SlurmExecutor``); set them on
    ``c.DassSlurmSpawner`` or ``c.SlurmExecutor`` instead to place only one of the two.
    """

    partition = Unicode(
        "",
        help="""Slurm partition of sessions and jobs whose user is in none of
        ``partitions_by_group`` ("" leaves Slurm's default partition).""",
    ).tag(config=True)

    partitions_by_group = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="""Partition by hub group, e.g. ``{"staff": "long", "beamline-x": "gpu"}``: a session
        or job goes to the partition of the first entry (in this order) naming one of its user's
        groups, else to ``partition``.""",
    ).tag(config=True)

    def partition_for_groups(self, groups: Iterable[str]) -> str:
        """The partition of a user in ``groups`` (:func:`choose_partition` of these settings)."""
        return choose_partition(groups, self.partitions_by_group, self.partition)
