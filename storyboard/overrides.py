"""``--set NAME=VALUE``: the values that replace a storyboard's ``vars`` (shared kernel).

The command line reads them before anything else, so this module is light: PyYAML, which
reads each value as a YAML scalar, is imported only when there is a value to read (a no-op
``render`` imports no YAML parser and no template engine).
"""

from __future__ import annotations

from typing import Any

from storyboard.errors import UsageError

__all__ = ["parse_set"]


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse ``--set NAME=VALUE`` arguments; each value is read as a YAML scalar.

    Raises:
        UsageError: an item is not ``NAME=VALUE`` or the value is not a scalar.
    """
    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise UsageError(
                f"--set {item!r}: expected NAME=VALUE", hint="for example --set hero='a red fox'"
            )
        import yaml  # only with a value to read (see the module's docstring)

        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)):
            value = raw  # a scalar was asked for; keep the text as written
        out[name] = value
    return out
