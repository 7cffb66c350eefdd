"""Typed, frozen data that flows between the stages (shared kernel; no I/O here).

``validate`` produces a :class:`Storyboard`: every template rendered, every default applied,
every path resolved and checked. Later stages (plan, render, stitch) read only these types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from storyboard.catalog import MODELS, ModelSpec

__all__ = [
    "Card",
    "Keyframe",
    "Media",
    "MediaKind",
    "OutputSettings",
    "Ref",
    "RenderSettings",
    "Shot",
    "Soundtrack",
    "Storyboard",
    "Transition",
    "Trim",
]

MediaKind = Literal["image", "video", "audio"]


@dataclass(frozen=True)
class Media:
    """A media input as written in the storyboard (after templating).

    ``path`` is the resolved local file, or ``None`` for an ``http(s)://`` URL.
    """

    source: str
    kind: MediaKind
    path: Path | None = None

    @property
    def is_url(self) -> bool:
        return self.path is None


@dataclass(frozen=True)
class Ref:
    """One reference: a single image, or a grid of 2-9 images, with an optional tag/audio."""

    images: tuple[Media, ...]
    tag: str | None = None
    grid: bool = False
    audio: Media | None = None


@dataclass(frozen=True)
class Keyframe:
    """An image the video passes through at ``at`` seconds.

    ``tag`` names it for the provider (V4 ``mid_frame_images[].tag``); ``None``: unnamed.
    """

    at: float
    image: Media
    tag: str | None = None


@dataclass(frozen=True)
class Trim:
    """The part of a clip used in the cut, in seconds; ``end=None`` runs to the clip's end."""

    start: float = 0.0
    end: float | None = None


@dataclass(frozen=True)
class Transition:
    """How a shot joins the next one."""

    type: str = "cut"
    duration: float = 0.0


@dataclass(frozen=True)
class Card:
    """A title card drawn locally: no model, no cost."""

    text: str
    duration: float
    background: str = "#000000"
    color: str = "#ffffff"


@dataclass(frozen=True)
class Shot:
    """One shot, fully resolved: templates rendered, defaults applied, paths checked."""

    id: str
    index: int  # position in ``shots`` (0-based)
    line: int  # line of the shot in the storyboard file (1-based)
    model: str | None = None
    prompt: str = ""
    negative_prompt: str | None = None
    seed: int | None = None
    duration: float | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    first_frame: Media | None = None
    last_frame: Media | None = None
    keyframes: tuple[Keyframe, ...] = ()
    refs: tuple[Ref, ...] = ()
    audio: tuple[Media, ...] = ()
    reference_video: Media | None = None
    extends: str | None = None
    continues: str | None = None
    action: str | None = None
    prompt_optimizer: bool | None = None
    cut_type: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    takes: int = 1
    select: int = 1
    trim: Trim | None = None
    transition: Transition | None = None
    card: Card | None = None
    skip: bool = False

    @property
    def spec(self) -> ModelSpec | None:
        """The model's registry entry (``None`` for a title card)."""
        return MODELS.get(self.model) if self.model else None

    @property
    def upstream(self) -> str | None:
        """The shot this one builds on (``extends`` or ``continues``), if any."""
        return self.extends or self.continues

    def media(self) -> tuple[Media, ...]:
        """Every media input of the shot, in a stable order."""
        out: list[Media] = []
        for one in (self.first_frame, self.last_frame):
            if one is not None:
                out.append(one)
        out.extend(k.image for k in self.keyframes)
        for ref in self.refs:
            out.extend(ref.images)
            if ref.audio is not None:
                out.append(ref.audio)
        out.extend(self.audio)
        if self.reference_video is not None:
            out.append(self.reference_video)
        return tuple(out)


@dataclass(frozen=True)
class Soundtrack:
    """The music under the whole cut."""

    media: Media
    volume: float = 1.0
    fade_out: float = 0.0


@dataclass(frozen=True)
class OutputSettings:
    """Settings of the final cut."""

    path: Path
    fps: int = 24
    resolution: str = "720p"
    aspect_ratio: str = "16:9"
    transition: Transition = Transition()
    audio: Soundtrack | None = None
    fit: Literal["crop", "pad"] = "crop"


@dataclass(frozen=True)
class RenderSettings:
    """How ``render`` behaves."""

    budget: float | None = None
    concurrency: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Storyboard:
    """A valid storyboard, ready to plan."""

    path: Path  # absolute path of the storyboard file
    version: int
    title: str | None
    vars: Mapping[str, Any]
    shots: tuple[Shot, ...]
    output: OutputSettings
    render: RenderSettings

    @property
    def root(self) -> Path:
        """The storyboard's folder: relative paths resolve here and must stay inside."""
        return self.path.parent

    def shot(self, shot_id: str) -> Shot:
        """The shot with this id (``KeyError`` if there is none)."""
        for one in self.shots:
            if one.id == shot_id:
                return one
        raise KeyError(shot_id)
