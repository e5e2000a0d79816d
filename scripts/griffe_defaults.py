"""A griffe extension for the API reference: show a parameter default that names a constant as its value.

``AidolHook(aidol_conn_id: str = default_conn_name)`` tells a reader nothing; the reference
shows ``'aidol_default'`` instead. Only names that lead (through attributes and imports) to a
literal are replaced; anything else is left as written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import griffe

if TYPE_CHECKING:
    from collections.abc import Iterator

_MAX_HOPS = 10


class ConstantDefaults(griffe.Extension):
    """Replace parameter defaults that name constants by the constants' literal values."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Rewrite the defaults once the whole package is loaded, so every name can be resolved."""
        for function in _functions(pkg):
            for parameter in function.parameters:
                if isinstance(parameter.default, griffe.ExprName):
                    literal = _literal(parameter.default.canonical_path, loader)
                    if literal is not None:
                        parameter.default = literal


def _functions(obj: griffe.Object | griffe.Alias) -> Iterator[griffe.Function]:
    if obj.is_alias:
        return
    if isinstance(obj, griffe.Function):
        yield obj
    for member in obj.members.values():
        yield from _functions(member)


def _literal(path: str, loader: griffe.GriffeLoader) -> str | None:
    """Follow ``path`` through attributes and aliases to a string or number literal."""
    for _ in range(_MAX_HOPS):
        try:
            obj = loader.modules_collection.get_member(path)
        except (KeyError, ValueError):
            return None
        if isinstance(obj, griffe.Alias):
            try:
                obj = obj.final_target
            except griffe.AliasResolutionError:
                return None
        if not isinstance(obj, griffe.Attribute) or obj.value is None:
            return None
        if isinstance(obj.value, griffe.ExprName):
            path = obj.value.canonical_path
            continue
        value = str(obj.value)
        return value if value[:1] in "'\"0123456789" else None
    return None
