"""storyboard: turn a versioned YAML storyboard into a finished multi-shot video."""

from __future__ import annotations

__version__ = "0.1.0"
