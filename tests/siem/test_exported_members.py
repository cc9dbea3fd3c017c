"""``streams.siem.__all__`` is exactly the public names, sorted (constants, classes, functions)."""

from __future__ import annotations

import importlib

import pytest

import streams.siem

MODULES = ["streams.siem", "streams.siem.bulk", "streams.siem.ecs", "streams.siem.sink", "streams.siem.templates"]


def _order(name: str) -> tuple[int, str]:
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__, key=_order)
    for member in module.__all__:
        assert hasattr(module, member), member


def test_package_exports_every_public_member_of_its_modules() -> None:
    exported = set(streams.siem.__all__)
    for name in MODULES[1:]:
        assert set(importlib.import_module(name).__all__) <= exported, name
    submodules = {"annotations", "bulk", "dashboards", "ecs", "sink", "templates"}
    public = {n for n in dir(streams.siem) if not n.startswith("_") and n not in submodules}
    assert public == exported
    assert not exported & submodules  # no function shadows a submodule
