"""Spawn choices: one validation for the form and REST, against a real catalogue."""

import datetime

import pytest
from traitlets.config import Config

from dass.data.access import Identity
from dass.stacks.selection import SelectionError, options_from_form, validate_selection
from dass.stacks.registry import StackConfigError, StackRegistry

TODAY = datetime.date(2026, 11, 22)
ALICE = Identity("alice", frozenset({"p-2026-001"}))
BOB = Identity("bob", frozenset({"p-2026-002"}))
ADMIN = Identity("root", frozenset(), admin=True)


@pytest.fixture
def registry():
    return StackRegistry()


def check(options, identity, registry, catalog, max_datasets=3):
    return validate_selection(options, identity, registry, catalog, max_datasets=max_datasets, today=TODAY)


def test_valid_selection(registry, catalog):
    sel = check({"stack": "kmap", "size": "medium", "datasets": ["p-2026-002/kmap-sige-island"]},
                BOB, registry, catalog)
    assert (sel.stack.name, sel.size.name) == ("kmap", "medium")
    assert [d.id for d in sel.datasets] == ["p-2026-002/kmap-sige-island"]
    assert sel.to_user_options() == {"stack": "kmap", "size": "medium",
                                     "datasets": ["p-2026-002/kmap-sige-island"]}


def test_empty_options_take_the_defaults(registry, catalog):
    sel = check({}, ALICE, registry, catalog)
    assert sel.stack.name == "sem" and sel.size.name == "small" and sel.datasets == ()


def test_repeated_datasets_are_mounted_once(registry, catalog):
    ids = ["p-2026-001/sem-nanowires", "p-2026-001/sem-nanowires"]
    assert len(check({"datasets": ids}, ALICE, registry, catalog).datasets) == 1


@pytest.mark.parametrize("options, identity, message", [
    ([], ALICE, "user_options must be a JSON object"),
    ({"stack": 3}, ALICE, "stack must be a string"),
    ({"stack": "xrd"}, ALICE, "unknown stack 'xrd'; choose one of: sem, kmap, stm"),
    ({"size": "xl"}, ALICE, "unknown size 'xl'; choose one of: small, medium, large"),
    ({"stack": "stm", "size": "large"}, ALICE, "size 'large' is not available for stack 'stm'"),
    ({"datasets": ["p-2026-002/kmap-sige-island"]}, ALICE, "do not exist or you may not use them"),
    ({"datasets": ["p-2026-002/kmap-embargoed-public"]}, ALICE, "do not exist or you may not use them"),
    ({"datasets": ["a/b", "c/d", "e/f", "g/h"]}, ALICE, "too many datasets: 4 chosen, at most 3"),
    ({"datasets": [1]}, ALICE, "datasets must be a list of dataset ids"),
    ({"image": "evil"}, ALICE, "unknown option(s) 'image'"),
])
def test_refusals_say_what_to_fix(registry, catalog, options, identity, message):
    with pytest.raises(SelectionError, match=None) as e:
        check(options, identity, registry, catalog)
    assert message in str(e.value)


def test_admin_may_use_every_dataset(registry, catalog):
    ids = ["p-2026-002/kmap-embargoed-public", "p-2026-001/sem-nanowires"]
    assert [d.id for d in check({"datasets": ids}, ADMIN, registry, catalog).datasets] == ids


def test_group_restricted_stack_and_size(catalog):
    cfg = Config()
    cfg.StackRegistry.stacks = {"kmap": {"groups": ["beamline-id01"]}}
    cfg.StackRegistry.sizes = {"xl": {"display_name": "XL", "cpu": 8, "mem_gib": 32, "groups": ["staff"]},
                               "large": None}
    cfg.StackRegistry.stacks["sem"] = {"allowed_sizes": ["small", "xl"]}
    cfg.StackRegistry.stacks["kmap"]["allowed_sizes"] = ["small", "medium"]
    reg = StackRegistry(config=cfg)
    assert [s.name for s in reg.for_identity(ALICE)] == ["sem", "stm"]
    with pytest.raises(SelectionError, match="stack 'kmap' is not available to you"):
        check({"stack": "kmap"}, ALICE, reg, catalog)
    with pytest.raises(SelectionError, match="size 'xl' is not available for stack 'sem'"):
        check({"stack": "sem", "size": "xl"}, ALICE, reg, catalog)
    staff = Identity("carol", frozenset({"staff"}))
    assert check({"stack": "sem", "size": "xl"}, staff, reg, catalog).size.cpu == 8


def test_form_data_becomes_user_options():
    form = {"stack": ["sem"], "size": ["small"], "datasets": ["a/b", "c/d"], "_xsrf": ["x"]}
    assert options_from_form(form) == {"stack": "sem", "size": "small", "datasets": ["a/b", "c/d"]}
    assert options_from_form({}) == {"datasets": []}


@pytest.mark.parametrize("stacks, sizes, message", [
    ({"sem": {"default_size": "tiny"}}, {}, "unknown sizes ['tiny']"),
    ({"sem": {"colour": "red"}}, {}, "unknown fields ['colour']"),
    ({"sem": {"allowed_sizes": ["medium"]}}, {}, "default_size 'small' is not in allowed_sizes"),
    ({}, {"tiny": {"cpu": "one"}}, "needs numeric cpu and mem_gib"),
])
def test_bad_stack_configuration_is_named(stacks, sizes, message):
    cfg = Config()
    cfg.StackRegistry.stacks = stacks
    cfg.StackRegistry.sizes = sizes
    with pytest.raises(StackConfigError) as e:
        StackRegistry(config=cfg).all_stacks
    assert message in str(e.value)


def test_builtin_stacks_have_landing_notebooks(registry):
    for stack in registry.all_stacks.values():
        assert registry.landing_notebook_path(stack).is_file(), stack.name
        assert stack.file_types and stack.description
