"""Settings of the whole test run.

Per-user Unix accounts (``c.UserAccounts``, "auto": on as root) only where a test asks for
them: a component built in a test process without saying otherwise (a ``JobManager`` of the
job tests, a spawner of the hub tests) runs everything as the test's own account, as a
non-root install does, instead of creating ``dass-*`` accounts on the machine. The tests of
accounts, and the platforms of ``tests.support.PlatformProcess`` (which always write
``c.UserAccounts.enabled`` into their configuration), say what they want explicitly.
"""

from __future__ import annotations

import pytest

from dass.data.accounts import UserAccounts


@pytest.fixture(autouse=True, scope="session")
def _accounts_only_where_asked():
    trait = UserAccounts.class_traits()["enabled"]
    default = trait.default_value
    trait.default_value = False
    yield
    trait.default_value = default


@pytest.fixture
def product_defaults():
    """The product's own defaults back for one test (the generated config reference)."""
    trait = UserAccounts.class_traits()["enabled"]
    tests_default = trait.default_value
    trait.default_value = "auto"
    yield
    trait.default_value = tests_default
