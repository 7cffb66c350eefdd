"""The model registry (shared kernel): every fact about a hosted model as data, not branches.

For each model id of CONTRACT §2: its provider and endpoint, which shot fields it accepts,
per-field limits, output geometry (fps, frame size, clip length) and price. The facts come
from the providers' own pages (summarised in ``docs/providers.md``); where they are silent
(UNCONFIRMED) the choice made here is named in a comment next to the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

__all__ = [
    "ACTION_NEEDS",
    "ALL_SHOT_FIELDS",
    "ASPECT_RATIOS",
    "AUDIO_TYPES",
    "EDIT_FIELDS",
    "IMAGE_TYPES",
    "MANAGED",
    "MEDIA_LIMITS",
    "MODELS",
    "PREVIEW_PROVIDER",
    "RESOLUTIONS",
    "TRANSITIONS",
    "V4_ACTIONS",
    "VIDEO_TYPES",
    "MediaLimit",
    "ModelSpec",
    "Price",
    "frame_size",
    "get_model",
]

PREVIEW_PROVIDER = "preview"

RESOLUTIONS: tuple[str, ...] = ("480p", "720p", "1080p")
ASPECT_RATIOS: tuple[str, ...] = ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9", "9:21")
TRANSITIONS: tuple[str, ...] = (
    "cut",
    "crossfade",
    "fade",
    "wipe-left",
    "wipe-right",
    "wipe-up",
    "wipe-down",
    "slide-left",
    "slide-right",
    "slide-up",
    "slide-down",
)
V4_ACTIONS: tuple[str, ...] = (
    "generate",
    "image2video",
    "first_last_frame",
    "reference",
    "reference_video",
    "reference_audio",
    "extend",
)
# The shot fields a V4 ``action`` needs, any one of them (``reference_audio`` also takes the
# audio of a ref: a rule checks that).
ACTION_NEEDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "image2video": ("first_frame", "continues"),
        "first_last_frame": ("last_frame",),
        "reference": ("refs",),
        "reference_video": ("reference_video",),
        "reference_audio": ("audio", "refs"),
        "extend": ("extends",),
    }
)

# Every field a shot may carry (CONTRACT §1). Fields not in a model's ``accepts`` and not in
# ``_MODEL_AGNOSTIC`` are rejected on that model.
ALL_SHOT_FIELDS: frozenset[str] = frozenset(
    {
        "id", "model", "prompt", "negative_prompt", "seed", "duration", "aspect_ratio",
        "resolution", "first_frame", "last_frame", "keyframes", "refs", "audio",
        "reference_video", "extends", "continues", "action", "prompt_optimizer", "cut_type",
        "params", "takes", "select", "trim", "transition", "card", "skip",
    }
)  # fmt: skip
# Edit-only fields: they never change a generation key, only the edit key.
EDIT_FIELDS: frozenset[str] = frozenset({"trim", "transition", "select", "card"})
# Accepted by every model: bookkeeping and edit fields, and the provider escape hatch.
_MODEL_AGNOSTIC: frozenset[str] = frozenset(
    {"id", "model", "takes", "select", "trim", "transition", "skip", "params"}
)


@dataclass(frozen=True)
class MediaLimit:
    """What a local media file may be: its extensions and its size cap in bytes."""

    kind: Literal["image", "video", "audio"]
    extensions: tuple[str, ...]
    max_bytes: int


MB = 1024 * 1024
IMAGE_TYPES = MediaLimit("image", (".jpg", ".jpeg", ".png", ".webp"), 30 * MB)  # PROVIDERS §3.3
VIDEO_TYPES = MediaLimit("video", (".mp4", ".mov"), 100 * MB)  # PROVIDERS §3.3 ref_videos
AUDIO_TYPES = MediaLimit("audio", (".wav", ".mp3"), 15 * MB)  # PROVIDERS §3.3 audio
MEDIA_LIMITS: dict[str, MediaLimit] = {
    "image": IMAGE_TYPES,
    "video": VIDEO_TYPES,
    "audio": AUDIO_TYPES,
}


@dataclass(frozen=True)
class Price:
    """How a provider bills one run of a model, in USD.

    ``per_run`` is a flat price; ``per_second`` maps a resolution to a price per second of
    output; ``video_ref_per_second`` replaces it when the request carries a reference or
    extension video (the V4 surcharge).
    """

    per_run: float = 0.0
    per_second: tuple[tuple[str, float], ...] = ()
    video_ref_per_second: tuple[tuple[str, float], ...] = ()

    def estimate(self, *, seconds: float, resolution: str | None, video_ref: bool) -> float:
        """The price of one run producing ``seconds`` of video."""
        table = dict((video_ref and self.video_ref_per_second) or self.per_second)
        if not table:
            return round(self.per_run, 6)
        rate = table.get(resolution or "", max(table.values()))
        return round(self.per_run + rate * seconds, 6)


@dataclass(frozen=True)
class ModelSpec:
    """Everything storyboard knows about one hosted model."""

    id: str
    provider: Literal["wavespeed", "qingbo"]
    endpoint: str
    label: str
    accepts: frozenset[str]
    requires: frozenset[str]
    durations: tuple[int, int] | None  # inclusive integer range of ``duration``, or fixed
    default_duration: float  # seconds of output when ``duration`` is not given
    aspect_ratios: tuple[str, ...]  # accepted values of ``aspect_ratio`` (empty: not a field)
    default_aspect_ratio: str
    resolutions: tuple[str, ...]  # accepted values of ``resolution`` (empty: not a field)
    default_resolution: str
    fps: int
    refs: tuple[int, int] = (0, 0)  # min and max number of ``refs`` items
    tagged_refs: bool = False  # refs may be {tag, image} / {tag, images} (+ audio)
    grid: tuple[int, int] = (2, 9)  # images per grid ref
    max_keyframes: int = 0
    prompt_max: int = 5000
    # When extending: does the returned clip hold the source footage followed by the new
    # footage ("source+new"), or only the new footage ("new")?
    extend_output: Literal["new", "source+new"] = "new"
    cut_types: tuple[str, ...] = ()
    seed_range: tuple[int, int] | None = None
    price: Price = Price()
    # Seconds a local input of a media kind must last ("video": reference video, "audio":
    # driving audio), read from the file's header by ``validate``.
    media_seconds: tuple[tuple[str, tuple[float, float]], ...] = ()
    # ``params`` keys the request builder sets itself, or that the price or a check depends
    # on: a shot's ``params`` may not carry them (it would bill or send what validate and the
    # plan never saw). Maps the key to the shot field that says it instead ("a/b": either;
    # :data:`MANAGED`: no field, storyboard drives it).
    reserved_params: Mapping[str, str] = field(default_factory=dict, hash=False)
    # Output geometry fixed by the model, when it ignores resolution/aspect ratio.
    fixed_size: tuple[int, int] | None = None
    # Frame size per aspect ratio where the model's buckets are not "short side = resolution".
    sizes: tuple[tuple[str, tuple[int, int]], ...] = ()
    frames_plus_one: bool = False  # open-source V3 writes duration*fps+1 frames
    # A prompt is required unless the shot gives one of these inputs (text-to-video needs
    # one; a model that always requires its prompt says so in ``requires``).
    prompt_unless: frozenset[str] = frozenset()

    def seconds_range(self, kind: str) -> tuple[float, float] | None:
        """How long (min, max seconds) a local input of ``kind`` may be, if limited."""
        return dict(self.media_seconds).get(kind)

    @property
    def can_extend(self) -> bool:
        """Whether the model continues another shot's video (``extends``)."""
        return "extends" in self.accepts

    @property
    def takes_first_frame(self) -> bool:
        """Whether the model starts from an image (so it can ``continues`` a shot)."""
        return "continues" in self.accepts

    def clip_seconds(self, duration: float | None) -> float:
        """Length in seconds of the clip this model returns for a requested duration.

        For an extension model returning source + new, this is only the *new* part; the
        caller adds the source length.
        """
        seconds = float(duration) if duration is not None else self.default_duration
        if self.frames_plus_one:
            return (round(seconds * self.fps) + 1) / self.fps
        return seconds

    def size(self, resolution: str | None, aspect_ratio: str | None) -> tuple[int, int]:
        """Output frame size (width, height) for a resolution and aspect ratio."""
        if self.fixed_size is not None:
            return self.fixed_size
        table = dict(self.sizes)
        if table:
            return table.get(
                aspect_ratio or self.default_aspect_ratio, table[self.default_aspect_ratio]
            )
        return frame_size(
            resolution or self.default_resolution, aspect_ratio or self.default_aspect_ratio
        )


def frame_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """Frame size for ``720p`` + ``16:9`` style settings: the short side is the resolution.

    Both sides are even (every H.264 encoder needs that); ``720p 16:9`` is 1280x720 and
    ``720p 9:16`` is 720x1280. A resolution written as an exact size, ``960x544`` (what
    ``output.resolution: auto`` resolves to when the models' frame size has no name), is that
    size whatever the aspect ratio.
    """
    if "x" in resolution:
        width_text, height_text = resolution.split("x", 1)
        return (int(width_text), int(height_text))
    short = int(resolution.rstrip("p"))
    w_ratio, h_ratio = (int(x) for x in aspect_ratio.split(":"))
    width: float
    height: float
    if w_ratio >= h_ratio:
        height, width = short, short * w_ratio / h_ratio
    else:
        width, height = short, short * h_ratio / w_ratio
    return (2 * math.ceil(width / 2 - 1e-9), 2 * math.ceil(height / 2 - 1e-9))


_V4_PRICE = {
    # PROVIDERS §3.3 (Qingbo SkyReels V4 page), USD per second.
    "skyreels-v4-fast": Price(
        per_second=(("480p", 0.068), ("720p", 0.0935), ("1080p", 0.23375)),
        video_ref_per_second=(("480p", 0.1275), ("720p", 0.17), ("1080p", 0.425)),
    ),
    "skyreels-v4-std": Price(
        per_second=(("480p", 0.0935), ("720p", 0.119), ("1080p", 0.2975)),
        video_ref_per_second=(("480p", 0.153), ("720p", 0.2125), ("1080p", 0.53125)),
    ),
}

# Marks a reserved ``params`` key that no shot field stands for: storyboard drives it.
MANAGED = ""

# Keys the Qingbo request builder sets, and those the V4 price (resolution, duration, a video
# in ``ref_videos``/``video_urls``) or a check (limits of refs, keyframes, audio, video) reads.
# ``image_urls``/``video_urls`` are the "simplified mode" twins of ``ref_images``/``ref_videos``
# (the V4 page). Left to ``params``: ``callback_url``/``callback_events`` (a webhook changes
# neither the pixels nor the bill; storyboard polls either way) and ``extra``.
_V4_RESERVED = MappingProxyType(
    {
        "model": "model",
        "action": "action",
        "prompt": "prompt",
        "aspect_ratio": "aspect_ratio",
        "resolution": "resolution",
        "duration": "duration",
        "prompt_optimizer": "prompt_optimizer",
        "first_frame_image": "first_frame/continues",
        "last_frame_image": "last_frame",
        "mid_frame_images": "keyframes",
        "image_urls": "refs",
        "ref_images": "refs",
        "video_urls": "reference_video",
        "ref_videos": "reference_video/extends",
        "audio_urls": "audio",
    }
)
# Keys any WaveSpeed SkyReels request builder sets (reserved on all of them: the same word
# means the same thing on every endpoint), the price's resolution, and the two protocol
# switches storyboard relies on being off: sync mode (the submit would block and answer 504
# while the task runs: "outcome unknown") and base64 outputs (nothing to download).
_WAVESPEED_RESERVED = MappingProxyType(
    {
        "prompt": "prompt",
        "negative_prompt": "negative_prompt",
        "image": "first_frame/continues",
        "images": "refs",
        "video": "extends",
        "seed": "seed",
        "duration": "duration",
        "aspect_ratio": "aspect_ratio",
        "resolution": "resolution",
        "cut_type": "cut_type",
        "enable_sync_mode": MANAGED,
        "enable_base64_output": MANAGED,
    }
)

_V4_FIELDS = frozenset(
    {
        "prompt", "duration", "aspect_ratio", "resolution", "first_frame", "last_frame",
        "keyframes", "refs", "audio", "reference_video", "extends", "continues", "action",
        "prompt_optimizer",
    }
)  # fmt: skip


def _v4(model_id: str, label: str) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        provider="qingbo",
        endpoint="/v1/tasks",
        label=label,
        accepts=_V4_FIELDS | _MODEL_AGNOSTIC,
        requires=frozenset(),  # prompt is required only for text-to-video: prompt_unless
        prompt_unless=frozenset(
            {"first_frame", "refs", "reference_video", "audio", "extends", "continues"}
        ),
        durations=(3, 15),
        default_duration=5,
        aspect_ratios=("16:9", "9:16", "4:3", "3:4", "1:1"),
        default_aspect_ratio="16:9",
        resolutions=RESOLUTIONS,
        default_resolution="720p",
        # V4 output frame rate: 32 fps is documented by Runware for SkyReels V4
        # (PROVIDERS §4.4); Qingbo does not state it. UNCONFIRMED for Qingbo.
        fps=32,
        refs=(0, 6),
        tagged_refs=True,
        max_keyframes=6,
        # Qingbo: "the new video is appended to the source" (PROVIDERS §4.3): we read that as
        # source + new footage. UNCONFIRMED; the stitcher checks it against the clip length.
        extend_output="source+new",
        price=_V4_PRICE[model_id],
        # The V4 page's resource limits: ref_videos 2-30 s, audio_urls / audio_url 3-30 s.
        media_seconds=(("video", (2.0, 30.0)), ("audio", (3.0, 30.0))),
        reserved_params=_V4_RESERVED,
    )


MODELS: dict[str, ModelSpec] = {
    "skyreels-v1": ModelSpec(
        id="skyreels-v1",
        provider="wavespeed",
        reserved_params=_WAVESPEED_RESERVED,
        endpoint="wavespeed-ai/SkyReels-V1",
        label="SkyReels V1 image-to-video",
        # v3 schema: prompt, image, seed (PROVIDERS §2.1). negative_prompt is documented on
        # the legacy v2 schema only; whether v3 accepts it is UNCONFIRMED, so we keep it.
        accepts=frozenset({"prompt", "negative_prompt", "first_frame", "continues", "seed"})
        | _MODEL_AGNOSTIC,
        requires=frozenset({"prompt", "first_frame"}),
        durations=None,
        # Hosted output length is UNCONFIRMED: the open-source model writes 97 frames at
        # 24 fps, 960x544 (PROVIDERS §4.1), which we use.
        default_duration=97 / 24,
        aspect_ratios=(),
        default_aspect_ratio="16:9",
        resolutions=(),
        default_resolution="540p",
        fps=24,
        seed_range=(-1, 2147483647),
        price=Price(per_run=0.20),
        fixed_size=(960, 544),
    ),
    "skyreels-v3-reference": ModelSpec(
        id="skyreels-v3-reference",
        provider="wavespeed",
        reserved_params=_WAVESPEED_RESERVED,
        endpoint="skywork-ai/skyreels-v3/reference-to-video",
        label="SkyReels V3 reference-to-video",
        accepts=frozenset({"prompt", "refs", "aspect_ratio", "duration"}) | _MODEL_AGNOSTIC,
        requires=frozenset({"prompt", "refs"}),
        durations=(5, 10),
        default_duration=5,
        aspect_ratios=("16:9", "9:16", "1:1"),
        default_aspect_ratio="16:9",
        resolutions=(),
        default_resolution="720p",
        fps=24,
        refs=(1, 4),
        price=Price(per_second=(("720p", 0.04),)),
        frames_plus_one=True,  # open-source V3: duration*24+1 frames (PROVIDERS §4.3)
        # Open-source V3 720P buckets (PROVIDERS §4.3); hosted sizes UNCONFIRMED.
        sizes=(("16:9", (1280, 720)), ("9:16", (720, 1280)), ("1:1", (960, 960))),
    ),
    "skyreels-v3-extend": ModelSpec(
        id="skyreels-v3-extend",
        provider="wavespeed",
        reserved_params=_WAVESPEED_RESERVED,
        endpoint="skywork-ai/skyreels-v3/extend-video",
        label="SkyReels V3 single-shot extension",
        accepts=frozenset({"prompt", "extends", "duration"}) | _MODEL_AGNOSTIC,
        requires=frozenset({"prompt", "extends"}),
        # Hosted range UNCONFIRMED; the open-source model takes 5-30 s (PROVIDERS §4.3).
        durations=(5, 30),
        default_duration=5,
        aspect_ratios=(),
        default_aspect_ratio="16:9",
        resolutions=(),
        default_resolution="720p",
        fps=24,
        extend_output="new",  # open-source pipeline returns only the new footage (§4.3)
        # "$0.2 per run" at the default 5 s and "pricing is based on duration" (§2.3):
        # we bill $0.04/s like V3 reference. UNCONFIRMED.
        price=Price(per_second=(("720p", 0.04),)),
    ),
    "skyreels-v3-cutshot": ModelSpec(
        id="skyreels-v3-cutshot",
        provider="wavespeed",
        reserved_params=_WAVESPEED_RESERVED,
        endpoint="skywork-ai/skyreels-v3/extend-video-cutshot",
        label="SkyReels V3 shot-switching extension",
        accepts=frozenset({"prompt", "extends", "duration", "cut_type"}) | _MODEL_AGNOSTIC,
        requires=frozenset({"prompt", "extends"}),
        durations=(2, 5),  # open-source code accepts 2-5 only (PROVIDERS §4.3)
        default_duration=5,
        aspect_ratios=(),
        default_aspect_ratio="16:9",
        resolutions=(),
        default_resolution="720p",
        fps=24,
        extend_output="new",
        # "Auto" is the documented default; the others are the open-source model's names
        # (PROVIDERS §2.4, UNCONFIRMED on WaveSpeed).
        cut_types=("Auto", "Cut-In", "Cut-Out", "Shot/Reverse Shot", "Multi-Angle", "Cut Away"),
        price=Price(per_run=0.20),  # "$0.2 per run" (PROVIDERS §2.4)
        frames_plus_one=True,
    ),
    "skyreels-v4-fast": _v4("skyreels-v4-fast", "SkyReels V4 fast"),
    "skyreels-v4-std": _v4("skyreels-v4-std", "SkyReels V4 std"),
}


def get_model(model_id: str) -> ModelSpec:
    """The spec of a model id; ``KeyError`` for an unknown id (validation reports those)."""
    return MODELS[model_id]
