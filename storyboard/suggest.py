"""Shared kernel: the one "did you mean" of the package.

Every hint that suggests a near spelling (an unknown key, model, shot id, variable, file
name or command-line option) comes from here, so they all agree on what "near" means.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["closest", "did_you_mean"]

# difflib's ratio above which two spellings count as the same word mistyped.
CUTOFF = 0.6


def closest(word: object, choices: Iterable[object]) -> str | None:
    """The choice nearest to ``word`` (compared as text), or ``None`` if none is near."""
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=CUTOFF)
    return match[0] if match else None


def did_you_mean(word: object, choices: Iterable[object]) -> str | None:
    """``did you mean 'x'?`` for the choice nearest to ``word``, or ``None``."""
    match = closest(word, choices)
    return f"did you mean {match!r}?" if match is not None else None
