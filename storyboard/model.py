"""Typed, frozen data that flows between the stages (shared kernel; no I/O here).

``validate`` produces a :class:`Storyboard`: every template rendered, every default applied,
every path resolved and checked. Later stages (plan, render, stitch) read only these types.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from storyboard.catalog import ASPECT_RATIOS, MODELS, RESOLUTIONS, ModelSpec, frame_size

__all__ = [
    "AUTO",
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
    "resolve_output",
]

AUTO = "auto"  # ``output.fps`` / ``output.resolution``: what most shots' models produce

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
    def native(self) -> tuple[int, tuple[int, int]] | None:
        """The frame rate and frame size the shot's model renders it at (the catalogue's, for
        the shot's resolution and aspect ratio); ``None`` for a title card."""
        spec = self.spec
        if spec is None or self.card is not None:
            return None
        return spec.fps, spec.size(self.resolution, self.aspect_ratio)

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
    """Settings of the final cut, ``auto`` already resolved (:func:`resolve_output`).

    ``resolution`` is a named resolution (``720p``: the short side, with ``aspect_ratio``)
    or, when ``auto`` resolved to a frame size that has no name (SkyReels V1's 960x544), that
    exact size as ``960x544``. ``auto`` names the settings that were ``auto``.
    """

    path: Path
    fps: int = 24
    resolution: str = "720p"
    aspect_ratio: str = "16:9"
    transition: Transition = Transition()
    audio: Soundtrack | None = None
    fit: Literal["crop", "pad"] = "crop"
    auto: tuple[str, ...] = ()  # of "fps", "resolution"

    @property
    def size(self) -> tuple[int, int]:
        """The cut's frame size (width, height)."""
        return frame_size(self.resolution, self.aspect_ratio)

    def describe(self) -> str:
        """``1280x720 at 32 fps (auto)``: the cut's format as ``plan`` and ``validate`` say it."""
        width, height = self.size
        text = f"{width}x{height} at {self.fps} fps"
        if self.auto:
            both = len(self.auto) == 2
            text += " (auto)" if both else f" ({self.auto[0]} auto)"
        return text

    def to_json(self) -> dict[str, object]:
        """The resolved format for ``--json`` output."""
        width, height = self.size
        return {
            "fps": self.fps,
            "resolution": self.resolution,
            "aspect_ratio": self.aspect_ratio,
            "width": width,
            "height": height,
            "auto": list(self.auto),
        }


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


def resolve_output(
    shots: Iterable[Shot], *, fps: int | None, resolution: str | None, aspect_ratio: str | None
) -> tuple[int, str, str, tuple[str, ...]]:
    """The cut's ``(fps, resolution, aspect ratio, what was auto)``; ``None`` is ``auto`` (or,
    for the aspect ratio, not written).

    ``auto`` is what most shots' models produce (:attr:`Shot.native`, from the catalogue, for
    each shot's settings; title cards and skipped shots do not count), so clips of one model
    family enter the cut as they are. A tie goes to the value of the earliest of the tied
    shots. The frame size is taken whole (960x544 for SkyReels V1, 960x960 for V3 at 1:1);
    with an ``aspect_ratio`` written, only the shots of that shape count (within 2 %), and
    when none has it the cut has that shape at the named resolution nearest to the short side
    of the most common size. Without any model shot, ``auto`` is 24 fps and 720p 16:9.
    """
    natives = [native for native in (s.native for s in shots if not s.skip) if native]
    auto = tuple(
        name for name, value in (("fps", fps), ("resolution", resolution)) if value is None
    )
    if fps is None:
        fps = _most_common(rate for rate, _ in natives) or _DEFAULT_FPS
    if resolution is not None:
        return fps, resolution, aspect_ratio or _DEFAULT_ASPECT, auto
    sizes = [size for _, size in natives]
    size = _most_common(s for s in sizes if aspect_ratio is None or _has_ratio(s, aspect_ratio))
    if size is not None:
        return (fps, *_named(size, aspect_ratio), auto)
    common = _most_common(sizes)
    short = min(common) if common else 720
    named = min(RESOLUTIONS, key=lambda r: (abs(int(r.rstrip("p")) - short), r))
    return fps, named, aspect_ratio or _DEFAULT_ASPECT, auto


_DEFAULT_FPS = 24  # ``auto`` without a model shot, and the cut of an invalid ``output``
_DEFAULT_ASPECT = "16:9"
_T = TypeVar("_T", bound=Hashable)


def _most_common(values: Iterable[_T]) -> _T | None:
    """The value that occurs most often; on a tie, the one that occurs first."""
    counts = Counter(values)  # insertion-ordered, and max() keeps the first of equals
    return max(counts, key=counts.__getitem__, default=None)


def _ratio(aspect_ratio: str) -> float:
    width, height = (int(x) for x in aspect_ratio.split(":"))
    return width / height


def _has_ratio(size: tuple[int, int], aspect_ratio: str) -> bool:
    """Whether a frame size has this aspect ratio, within 2 % (960x544 is 16:9)."""
    return abs(math.log(size[0] / size[1] / _ratio(aspect_ratio))) < 0.02


def _named(size: tuple[int, int], aspect_ratio: str | None) -> tuple[str, str]:
    """``(resolution, aspect ratio)`` naming ``size``: ``("720p", "16:9")`` for 1280x720, or
    the exact ``("960x544", "16:9")`` when no named pair makes that size (the aspect ratio
    then the one written, else the nearest named one)."""
    for ratio in (aspect_ratio,) if aspect_ratio else ASPECT_RATIOS:
        for resolution in RESOLUTIONS:
            if frame_size(resolution, ratio) == size:
                return resolution, ratio
    nearest = min(ASPECT_RATIOS, key=lambda r: abs(math.log(size[0] / size[1] / _ratio(r))))
    return f"{size[0]}x{size[1]}", aspect_ratio or nearest
