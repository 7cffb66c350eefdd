"""storyboard: turn a versioned YAML storyboard into a finished multi-shot video.

The pipeline, one stage per module (each callable on its own)::

    load -> validate -> template -> plan -> render -> stitch

Public API (heavy modules are imported only when their name is first used)::

    import storyboard

    report = storyboard.build("storyboard.yaml")  # the free preview; live=True renders live
    batch = storyboard.build_many(["a.yaml", "films/"])  # many storyboards, one scheduler
    print(report.cut, report.seconds, report.spent.usd)

    board = storyboard.load_storyboard("storyboard.yaml")
    store = storyboard.Store.for_storyboard(board.path)
    plan = storyboard.make_plan(board, store)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from storyboard.errors import InvalidStoryboard, Problem, StoryboardError

__version__ = "0.1.0"

__all__ = [
    "BatchReport",
    "BuildFailed",
    "BuildReport",
    "InvalidStoryboard",
    "Plan",
    "Problem",
    "Store",
    "Storyboard",
    "StoryboardError",
    "__version__",
    "build",
    "build_async",
    "build_many",
    "load_storyboard",
    "make_plan",
    "render_plan",
    "stitch",
]

_LAZY = {
    "BatchReport": "storyboard.batch",
    "build_many": "storyboard.batch",
    "BuildFailed": "storyboard.pipeline",
    "BuildReport": "storyboard.pipeline",
    "build": "storyboard.pipeline",
    "build_async": "storyboard.pipeline",
    "load_storyboard": "storyboard.validate",
    "Storyboard": "storyboard.model",
    "Store": "storyboard.cache",
    "Plan": "storyboard.plan",
    "make_plan": "storyboard.plan",
    "render_plan": "storyboard.render",
    "stitch": "storyboard.stitcher",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'storyboard' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
