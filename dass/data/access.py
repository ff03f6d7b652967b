"""Who may see a dataset: the access rule of docs/metadata.md, in one place.

A user sees a dataset if they are admin, or one of their hub groups is in ``access.groups``,
or ``access.public`` is true and ``access.embargo_until`` is absent or not after today.
:meth:`dass.data.catalog.Catalog.search` applies the same rule in SQL; this function is the
reference used everywhere else (spawner checks, job inputs) and by the tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Identity", "can_see"]


@dataclass(frozen=True)
class Identity:
    """A user as the data layer knows them.

    Parameters
    ----------
    name : str
        Hub user name (for logs).
    groups : frozenset of str
        Hub groups of the user; groups name proposals. Any iterable is accepted and stored as a
        frozenset.
    admin : bool
        Admins see every dataset.
    """

    name: str
    groups: frozenset[str]
    admin: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.groups, str):
            raise TypeError("Identity.groups must be a collection of group names, not one string")
        if not isinstance(self.groups, frozenset):
            object.__setattr__(self, "groups", frozenset(self.groups))


class _HasAccess(Protocol):
    access_groups: Iterable[str]
    public: bool
    embargo_until: dt.date | None


def can_see(identity: Identity, record_or_metadata: _HasAccess | Any, today: dt.date) -> bool:
    """Whether ``identity`` may see a dataset.

    Parameters
    ----------
    identity : Identity
        The user.
    record_or_metadata : DatasetRecord or DatasetMetadata
        Anything with ``access_groups``, ``public`` and ``embargo_until`` attributes.
    today : datetime.date
        The day the embargo is compared with (pass it explicitly so tests and servers agree).

    Returns
    -------
    bool

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> ds = NS(access_groups=["p1"], public=True, embargo_until=dt.date(2030, 1, 1))
    >>> can_see(Identity("alice", frozenset({"p1"})), ds, dt.date(2025, 1, 1))
    True
    >>> can_see(Identity("bob", frozenset()), ds, dt.date(2025, 1, 1))
    False
    >>> can_see(Identity("bob", frozenset()), ds, dt.date(2030, 1, 1))
    True
    """
    if identity.admin:
        return True
    if identity.groups & set(record_or_metadata.access_groups):
        return True
    if identity.name in set(getattr(record_or_metadata, "access_users", ()) or ()):
        return True
    if record_or_metadata.public:
        embargo = record_or_metadata.embargo_until
        return embargo is None or embargo <= today
    return False
