"""How much of an extension clip is new footage (pure arithmetic on lengths).

A shot that ``extends`` another gets back either the source followed by the new footage or
only the new part; the model registry says which (``extend_output``) and the clip's real
length decides when a provider did otherwise. The render stage uses this to judge whether a
provider delivered enough (:func:`new_footage_seconds`), the stitcher to cut the source off
(:func:`new_footage_offset`).
"""

from __future__ import annotations

__all__ = ["new_footage_offset", "new_footage_seconds"]

# How far a clip's length may be from what the registry predicts before we say so.
_TOLERANCE = 0.35


def new_footage_offset(
    actual: float, new_seconds: float, upstream_seconds: float | None, extend_output: str
) -> float:
    """Where the new footage starts in an extension clip.

    The registry says whether the provider returns source + new footage or only the new
    part; the clip's real length decides when the provider did otherwise.
    """
    if upstream_seconds is None:
        return 0.0
    if _holds_source(actual, new_seconds, upstream_seconds, extend_output):
        return max(0.0, actual - new_seconds)
    return 0.0


def new_footage_seconds(
    actual: float, new_seconds: float, upstream_seconds: float | None, extend_output: str
) -> float:
    """How much new footage a clip of ``actual`` seconds really holds.

    An extension clip that holds its source (by the registry, or by its length) holds only
    what follows the source; any other clip is all new footage.
    """
    if upstream_seconds is None or not _holds_source(
        actual, new_seconds, upstream_seconds, extend_output
    ):
        return actual
    return max(0.0, actual - upstream_seconds)


def _holds_source(
    actual: float, new_seconds: float, upstream_seconds: float, extend_output: str
) -> bool:
    """Whether an extension clip starts with its source footage (see new_footage_offset)."""
    with_source = upstream_seconds + new_seconds
    looks_with_source = abs(actual - with_source) < abs(actual - new_seconds)
    registry_says_source = extend_output == "source+new" and actual > new_seconds + _TOLERANCE
    return looks_with_source or registry_says_source
