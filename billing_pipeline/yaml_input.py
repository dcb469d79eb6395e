"""YAML that people write (the plan catalog, customers files, the dunning policy): safe types
only, and no aliases. An alias (``*name``, or a ``<<`` merge) repeats its anchored node wherever
it is used, so a 50 KB file can stand for 10^8 tiers, past every size limit; nothing these files
hold needs one, so the loader refuses the second use of a node, with the anchor's line."""

from __future__ import annotations

from typing import Any

import yaml

ALIAS_REFUSED = "YAML aliases (*name) and merge keys (<<) are not allowed: write each item out"


class _NoAliases:
    constructed_objects: dict

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if node in self.constructed_objects:  # a node met again is an alias of its anchor
            raise yaml.constructor.ConstructorError(None, None, ALIAS_REFUSED, node.start_mark)
        return super().construct_object(node, deep)  # type: ignore[misc]


class SafeLoader(_NoAliases, yaml.SafeLoader):
    """The Python loader (its nodes keep their lines for the customers file's messages)."""


class _FastSafeLoader(_NoAliases, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """libyaml's parser when it is installed."""


def load(text: str) -> Any:
    """The document in ``text``; ``yaml.YAMLError`` (with ``problem_mark``) for bad YAML or an alias."""
    return yaml.load(text, Loader=_FastSafeLoader)  # noqa: S506 - a SafeLoader
