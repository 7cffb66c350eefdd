"""Where an extension's new footage starts, whichever way a provider returns it."""

from __future__ import annotations

import pytest

from storyboard.media.footage import new_footage_offset


@pytest.mark.parametrize(
    ("actual", "new", "upstream", "registry", "expected"),
    [
        # V3: the registry says "new only" and the clip agrees.
        (5.0, 5.0, 6.0, "new", 0.0),
        # V4: the registry says "source + new" and the clip agrees: skip the source.
        (10.0, 4.0, 6.0, "source+new", 6.0),
        # A provider that does otherwise is caught by the clip's real length.
        (4.0, 4.0, 6.0, "source+new", 0.0),
        (11.0, 5.0, 6.0, "new", 6.0),
        # Not an extension at all.
        (5.0, 5.0, None, "source+new", 0.0),
        # Frame rounding around the expected lengths stays on the right side.
        (10.04, 4.0, 6.04, "source+new", pytest.approx(6.04)),
        (4.04, 4.0, 6.0, "source+new", 0.0),
    ],
)
def test_new_footage_offset(
    actual: float, new: float, upstream: float | None, registry: str, expected: float
) -> None:
    assert new_footage_offset(actual, new, upstream, registry) == expected
