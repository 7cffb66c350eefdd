"""Looking at a rendered cut: the review page (issue 11 items 1 and 2).

* :mod:`storyboard.review.page` writes a self-contained review folder (``index.html`` and
  the media it shows, named by content digest) that works from ``file://`` and can be
  zipped and sent;
* :mod:`storyboard.review.server` serves that page on 127.0.0.1 and lets a reviewer pick a
  take, which edits ``select:`` in the storyboard and re-stitches the cut.

Importing this package imports nothing heavy: :func:`write_review` and :class:`ReviewPage`
are served lazily from :mod:`storyboard.review.page`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storyboard.review.page import ReviewPage, write_review

__all__ = ["ReviewPage", "write_review"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from storyboard.review import page

        return getattr(page, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
