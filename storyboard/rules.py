"""Stage 2c, rules: what a shot may be, read from the model catalogue.

Every check here is a pure function of a model's :class:`~storyboard.catalog.ModelSpec` and
the shot's (templated, defaults-merged) field values: accepted fields, required fields,
ranges and choices, combinations, reserved ``params`` keys, the inputs each V4 mode needs,
media kinds, sizes and lengths, counts of refs and keyframes, trims and transitions. A
rule says which shot field is wrong and what to say; :mod:`storyboard.validate` walks the
document, reads the files and places each finding at its ``FILE:LINE:COL``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from storyboard import catalog
from storyboard.catalog import ACTION_NEEDS, MANAGED, MODELS, ModelSpec
from storyboard.hashing import DigestMemo
from storyboard.mediainfo import MediaMemo, UnreadableMedia, WrongContent
from storyboard.model import Media, MediaKind, Shot, Transition
from storyboard.paths import store_root
from storyboard.suggest import did_you_mean

__all__ = [
    "MODEL_RULES",
    "Finding",
    "Inputs",
    "Overrun",
    "check_model_fields",
    "clip_seconds",
    "extension_source",
    "file_limits",
    "is_colour",
    "keyframe_count",
    "keyframe_time",
    "media_length",
    "not_accepted",
    "on_screen",
    "overrun_text",
    "plain_ref",
    "refs_count",
    "seconds_text",
    "transition_overruns",
    "trim_findings",
    "unknown_model",
]


@dataclass(frozen=True)
class Finding:
    """One broken rule: the shot field it is about and what to tell the author.

    ``below`` is the place under that field (a ``params`` key); ``key`` points at the key
    rather than its value.
    """

    field: str
    message: str
    hint: str | None = None
    below: tuple[str | int, ...] = ()
    key: bool = False


Fields = Mapping[str, Any]
Rule = Callable[[ModelSpec, Fields], Iterable[Finding]]


# -- the model's fields ----------------------------------------------------------------


def not_accepted(spec: ModelSpec, field: str) -> Finding | None:
    """A shot field the model does not take (at the key, naming the models that do)."""
    if field in spec.accepts:
        return None
    takers = [m.id for m in MODELS.values() if field in m.accepts]
    hint = "accepted by " + ", ".join(takers) if takers else "no model takes this field"
    return Finding(field, f"{spec.id} does not accept {field!r}", hint, key=True)


def unknown_model(model_id: str) -> tuple[str, str]:
    """Message and hint for a model id the catalogue does not have."""
    hint = did_you_mean(model_id, MODELS) or "models: " + ", ".join(MODELS)
    return f"unknown model {model_id!r}", hint


# A required field another field can stand in for (V1 takes its first frame from
# `continues` too).
_STANDS_IN: Mapping[str, tuple[str, ...]] = {"first_frame": ("continues",)}


def _require_hint(spec: ModelSpec, field: str) -> str | None:
    low, high = spec.refs
    return {
        "first_frame": "add first_frame: refs/start.jpg (an image path or URL), or continues: <earlier shot>",
        "extends": "add extends: <id of an earlier shot> — this model extends an existing clip",
        "refs": f"add refs: [refs/subject.jpg] with {low}-{high} reference images",
        "prompt": "add prompt: describing what happens in the shot",
    }.get(field)


def _requires(spec: ModelSpec, f: Fields) -> Iterator[Finding]:
    for need in sorted(spec.requires):
        if need in f or any(other in f for other in _STANDS_IN.get(need, ())):
            continue
        yield Finding(need, f"{spec.id} needs {need!r}", _require_hint(spec, need))


def _prompt_length(spec: ModelSpec, f: Fields) -> Iterator[Finding]:
    prompt = f.get("prompt", "")
    if len(prompt) > spec.prompt_max:
        yield Finding(
            "prompt",
            f"prompt is {len(prompt)} characters after templating; {spec.id} takes at most {spec.prompt_max}",
        )


def _duration(spec: ModelSpec, f: Fields) -> Iterator[Finding]:
    duration = f.get("duration")
    if duration is None or spec.durations is None:
        return
    low, high = spec.durations
    if duration != int(duration):
        yield Finding("duration", f"{spec.id} takes whole seconds, not {duration}")
    elif not low <= duration <= high:
        yield Finding("duration", f"{spec.id} takes a duration of {low}-{high} s, not {duration}")


# Fields whose value is one of a list the model spec holds: (field, spec attribute, whether
# the hint suggests a near spelling).
_CHOICES: tuple[tuple[str, str, bool], ...] = (
    ("aspect_ratio", "aspect_ratios", False),
    ("resolution", "resolutions", False),
    ("cut_type", "cut_types", True),
)


def _choices(spec: ModelSpec, f: Fields) -> Iterator[Finding]:
    for field, attribute, suggest in _CHOICES:
        choices: tuple[str, ...] = getattr(spec, attribute)
        if field in f and f[field] not in choices:
            yield Finding(
                field,
                f"{spec.id} takes {field} {', '.join(choices)}, not {f[field]!r}",
                did_you_mean(f[field], choices) if suggest else None,
            )


def _seed(spec: ModelSpec, f: Fields) -> Iterator[Finding]:
    if "seed" in f and spec.seed_range is not None:
        low, high = spec.seed_range
        if not low <= f["seed"] <= high:
            yield Finding("seed", f"{spec.id} takes a seed in {low}..{high}, not {f['seed']}")


# Fields a shot may not set together: (a, b, the one reported, message, hint).
_EXCLUSIVE: tuple[tuple[str, str, str, str, str | None], ...] = (
    ("extends", "continues", "continues",
     "a shot either extends or continues another shot, not both", None),
    ("continues", "first_frame", "first_frame",
     "first_frame and continues both set the first frame",
     "drop first_frame: `continues` takes the upstream shot's last frame"),
    ("extends", "reference_video", "reference_video",
     "{model} takes one video: extends and reference_video cannot be combined", None),
)  # fmt: skip


def _exclusive(spec: ModelSpec, f: Fields) -> Iterator[Finding]:
    for a, b, at, message, hint in _EXCLUSIVE:
        if a in f and b in f:
            yield Finding(at, message.format(model=spec.id), hint)


def _reserved_params(spec: ModelSpec, f: Fields) -> Iterator[Finding]:
    """``params`` may not carry a key the model's request, price or checks are built from."""
    params = f.get("params")
    if not isinstance(params, dict):
        return
    for key, value in params.items():
        field = spec.reserved_params.get(key)
        if field is None:
            continue
        if field == MANAGED:
            why = "storyboard relies on it being off (it submits, polls and downloads the task itself)"
            hint = f"remove {key!r} from params"
        else:
            why = "storyboard sends it from the shot's fields, and prices and checks those"
            hint = _field_hint(spec, field, value)
        yield Finding("params", f"params may not set {key!r}: {why}", hint, below=(key,), key=True)


def _modes(spec: ModelSpec, f: Fields) -> Iterator[Finding]:
    """The inputs a mode needs: a prompt without media, a first frame before a last, and
    each ``action``'s inputs (:data:`~storyboard.catalog.ACTION_NEEDS`)."""
    media = any(k in f for k in spec.prompt_unless)
    if spec.prompt_unless and not media and not f.get("prompt"):
        yield Finding("prompt", "a text-to-video shot needs a prompt")
    if "last_frame" in f and "first_frame" not in f and "continues" not in f:
        yield Finding("last_frame", "last_frame needs a first_frame (or continues)")
    action = f.get("action")
    needs = ACTION_NEEDS.get(action) if isinstance(action, str) else None
    if needs and not any(k in f for k in needs):
        yield Finding("action", f"action {action!r} needs {' or '.join(needs)}")
    ref_audio = any(isinstance(r, dict) and "audio" in r for r in f.get("refs", []))
    if action == "reference_audio" and "audio" not in f and not ref_audio:
        yield Finding("action", "action 'reference_audio' needs audio, or a ref with audio")


def _takes(spec: ModelSpec, f: Fields) -> Iterator[Finding]:
    takes = int(f.get("takes", 1))
    select = int(f.get("select", 1))
    if select > takes:
        yield Finding(
            "select",
            f"select is {select} but the shot has {takes} take(s)",
            f"use a number from 1 to {takes}, or raise takes",
        )


# The rules over a model shot's field values, in the order they are reported.
MODEL_RULES: tuple[Rule, ...] = (
    _requires,
    _prompt_length,
    _duration,
    _choices,
    _seed,
    _exclusive,
    _reserved_params,
    _modes,
    _takes,
)


def check_model_fields(spec: ModelSpec, f: Fields) -> list[Finding]:
    """Every :data:`MODEL_RULES` finding for a shot of ``spec`` with field values ``f``."""
    return [finding for rule in MODEL_RULES for finding in rule(spec, f)]


def _field_hint(spec: ModelSpec, field: str, value: Any) -> str:
    """What to write instead of a reserved ``params`` key (``field``: "a" or "a/b")."""
    fields = field.split("/")
    taken = [name for name in fields if name in spec.accepts]
    if not taken:
        return f"{spec.id} takes no {fields[0]!r}: remove it from params"
    shown = _yaml_scalar(value)
    if len(taken) == 1 and shown is not None:
        return f"did you mean `{taken[0]}: {shown}` on the shot itself?"
    return "use the shot field " + " or ".join(repr(name) for name in taken) + " instead"


def _yaml_scalar(value: Any) -> str | None:
    """A short scalar as it would be written in YAML (``None`` for anything else)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if not isinstance(value, str) or len(value) > 40 or "\n" in value:
        return None
    try:
        plain = yaml.safe_load(value) == value
    except yaml.YAMLError:
        plain = False
    return value if plain else json.dumps(value)


# -- media -----------------------------------------------------------------------------


def file_limits(source: str, kind: str, suffix: str, size: int) -> str | None:
    """What is wrong with a local ``kind`` file by its name and size (catalogue limits)."""
    limit = catalog.MEDIA_LIMITS[kind]
    if suffix.lower() not in limit.extensions:
        kinds = "/".join(e.lstrip(".").upper() for e in limit.extensions)
        return f"{source!r} is not an accepted {kind} file ({kinds})"
    if size > limit.max_bytes:
        return (
            f"{source!r} is {size / catalog.MB:.1f} MB; {kind} files may be at most "
            f"{limit.max_bytes // catalog.MB} MB"
        )
    return None


def media_length(
    source: str, name: str, kind: str, length: float, limits: tuple[float, float]
) -> tuple[str, str] | None:
    """Message and hint when a local file's length (seconds) is outside ``limits``."""
    low, high = limits
    measured = round(length, 3)
    if low <= measured <= high:
        return None
    what = "a reference video" if kind == "video" else kind
    hint = (
        f"cut it to {high:g} s, e.g. ffmpeg -i {name} -t {high:g} cut-{name}"
        if measured > high
        else f"use a longer {kind} file (at least {low:g} s)"
    )
    return f"{source!r} lasts {measured:g} s; {what} must last {low:g}-{high:g} s", hint


class Inputs:
    """The files a storyboard names, checked: a URL, or a file inside the storyboard's
    folder (links followed) of an accepted kind, size and content, and length if limited."""

    def __init__(self, storyboard: Path) -> None:
        self.storyboard = storyboard
        self.root = storyboard.parent
        self._real_root = Path(os.path.realpath(self.root))
        self._memo: MediaMemo | None = None

    def check(
        self, source: str, kind: MediaKind, seconds: tuple[float, float] | None = None
    ) -> Media | tuple[str, str | None]:
        """The media of ``source``, or what is wrong with it (message, hint).

        ``seconds``: how long a local file must last (read from its header).
        """
        if source.startswith(("http://", "https://")):
            return Media(source=source, kind=kind)
        if "://" in source:
            return f"{source!r}: only http(s) URLs and local paths are supported", None
        if "\0" in source:
            return f"{source!r} contains a NUL character", None
        target = self.root / source
        lexical = Path(os.path.normpath(target))
        if not lexical.is_relative_to(self.root):
            return (
                f"{source!r} is outside the storyboard's folder",
                "keep inputs in the storyboard's folder tree (or use an https URL)",
            )
        real = Path(os.path.realpath(target))
        if not real.is_relative_to(self._real_root):
            return (
                f"{source!r} is a link to a file outside the storyboard's folder",
                "copy the file into the storyboard's folder tree",
            )
        try:
            st = real.stat()
        except OSError:
            return f"no such file: {source!r}", _near_file(lexical)
        if not real.is_file():
            return f"{source!r} is not a file", None
        wrong = file_limits(source, kind, real.suffix, st.st_size)
        if wrong is not None:
            return wrong, None
        try:
            self.memo().content(real, kind, hash=seconds is not None, st=st)
        except WrongContent as exc:
            return exc.describe(repr(source)), exc.hint()
        if seconds is not None:
            try:
                length = self.memo().seconds(real)
            except UnreadableMedia as exc:
                return f"cannot read the length of {source!r} ({exc.reason})", exc.hint()
            too = media_length(source, Path(source).name, kind, length, seconds)
            if too is not None:
                return too
        return Media(source=source, kind=kind, path=real)

    def memo(self) -> MediaMemo:
        """Media formats and lengths by digest: persisted beside the store's digest memo if
        the store exists.

        ``validate`` never creates the store; a storyboard rendered before reuses what its
        render learned (and the other way round).
        """
        if self._memo is None:
            root = store_root(self.storyboard)
            if root.is_dir():
                self._memo = MediaMemo(root / "media.json", DigestMemo(root / "digests.json"))
            else:
                self._memo = MediaMemo()
        return self._memo

    def save(self) -> None:
        """Keep what the checks learned about media (when any file was read)."""
        if self._memo is not None:
            self._memo.save()


def _near_file(path: Path) -> str | None:
    folder = path.parent
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return f"the folder {folder.name!r} does not exist either" if folder.name else None
    return did_you_mean(path.name, names) or "paths are relative to the storyboard file"


def refs_count(spec: ModelSpec, count: int) -> str | None:
    """How many ``refs`` the model takes, if ``count`` is not that."""
    low, high = spec.refs
    if count and not low <= count <= high:
        return f"{spec.id} takes {low}-{high} refs, not {count}"
    return None


def plain_ref(spec: ModelSpec, item: Mapping[str, Any]) -> tuple[str, str] | None:
    """Message and hint when a model of plain reference images gets a tagged/grid/audio ref."""
    if spec.tagged_refs:
        return None
    if "images" in item or set(item) - {"image"}:
        return (
            f"{spec.id} takes plain reference images; tags, grids and audio are V4 features",
            "write the image path alone, e.g. - refs/bird.jpg",
        )
    return None


def keyframe_count(spec: ModelSpec, count: int) -> str | None:
    """How many keyframes the model takes, if ``count`` is more."""
    if count > spec.max_keyframes:
        return f"{spec.id} takes at most {spec.max_keyframes} keyframes, not {count}"
    return None


def keyframe_time(at: float, previous: float, seconds: float) -> str | None:
    """A keyframe's time must be after the previous one and inside the clip."""
    if previous < at < seconds:
        return None
    if at >= seconds:
        return f"keyframe at {at} s is not inside the {seconds:g} s clip"
    return f"keyframe times must be strictly increasing ({at} after {previous})"


def extension_source(spec: ModelSpec, target: str, seconds: float) -> tuple[str, str] | None:
    """The upstream clip is sent as the video to extend: the reference video's length limit."""
    limit = spec.seconds_range("video")
    if limit is None:
        return None
    low, high = limit
    if low <= seconds <= high:
        return None
    return (
        f"{spec.id}'s extension source must be {low:g}-{high:g} s long; the clip "
        f"of {target!r} is about {seconds:.1f} s",
        f"shorten {target!r} (or the shots it extends), or extend a shorter "
        "shot: the provider refuses a longer source video",
    )


def clip_seconds(shot: Shot, earlier: Mapping[str, tuple[int, Shot | None]]) -> float:
    """The expected length of ``shot``'s clip: its new footage, plus its source's clip when
    its model returns the source too (``extends`` chains are followed upwards)."""
    seconds = 0.0
    current: Shot | None = shot
    for _ in range(len(earlier) + 1):  # ids are earlier shots only, so this ends
        if current is None or current.spec is None:
            break
        seconds += current.spec.clip_seconds(current.duration)
        if current.spec.extend_output != "source+new" or not current.extends:
            break
        current = earlier.get(current.extends, (0, None))[1]
    return seconds


# -- the edit --------------------------------------------------------------------------


def trim_findings(start: float, end: float | None, seconds: float) -> tuple[str, str] | None:
    """``(trim key, message)`` when a trim does not fit a clip of ``seconds``."""
    if end is not None and end > seconds + 1e-6:
        return "end", f"trim end {end:g} s is past the end of the {seconds:g} s clip"
    if start >= (end if end is not None else seconds):
        return (
            "start",
            f"trim start {start:g} s leaves nothing of the clip (ends at {end if end is not None else seconds:g} s)",
        )
    return None


def is_colour(value: str) -> bool:
    """Whether a card colour is one PIL can draw (``#rrggbb`` or a CSS name)."""
    from PIL import ImageColor

    try:
        ImageColor.getrgb(value)
    except ValueError:
        return False
    return True


def on_screen(shot: Shot, fps: int) -> tuple[int, str] | None:
    """How many frames of the cut ``shot`` fills (as the stitcher counts them), and how
    that is said in a message; ``None`` when a length is not a finite number."""
    if shot.card is not None:
        seconds, what = shot.card.duration, "a {} s card"
    elif shot.spec is not None:
        seconds = shot.spec.clip_seconds(shot.duration)
        what = "{} s of new footage" if shot.extends else "{} s"
        if shot.trim is not None:
            end = shot.trim.end if shot.trim.end is not None else seconds
            seconds, what = end - shot.trim.start, "{} s after trim"
    else:
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    frames = max(1, round(seconds * fps))
    return frames, what.format(seconds_text(frames / fps))


def seconds_text(value: float) -> str:
    """Seconds for a message: at most two decimals, no trailing zeros (4.04, 1.5, 3)."""
    return f"{round(value, 2):g}"


@dataclass(frozen=True)
class Overrun:
    """A transition longer than the footage it joins, as the stitcher would clamp it."""

    a: Shot
    b: Shot
    transition: Transition
    before: Transition | None  # the transition into ``a``
    shown_a: tuple[int, str]
    shown_b: tuple[int, str]


def transition_overruns(
    sequence: list[Shot | None], default: Transition, fps: int
) -> Iterator[Overrun]:
    """Every transition of the cut ``sequence`` (``None``: an invalid shot) that the
    stitcher (``cutter._clamp``) would shorten: at most all of the next shot, and at most
    what the incoming transition left of this one, counted in frames of the cut."""
    incoming = 0  # frames of `a` that the transition into it takes
    before: Transition | None = None  # that transition
    for a, b in itertools.pairwise(sequence):
        shown_a = on_screen(a, fps) if a is not None else None
        shown_b = on_screen(b, fps) if b is not None else None
        if a is None or b is None or shown_a is None or shown_b is None:
            incoming, before = 0, None
            continue
        transition = a.transition or default
        want = round(transition.duration * fps) if transition.type != "cut" else 0
        fits = max(0, min(want, shown_a[0] - incoming, shown_b[0]))
        if fits < want:
            yield Overrun(a, b, transition, before, shown_a, shown_b)
        incoming, before = fits, transition


def overrun_text(overrun: Overrun, source: str, fps: int) -> tuple[str, str]:
    """Message and hint for an :class:`Overrun` written in ``source`` (``shot``,
    ``defaults`` or ``output``: then naming the two shots is all that says which join)."""
    a, b, transition, before = overrun.a, overrun.b, overrun.transition, overrun.before
    kind = f"{seconds_text(transition.duration)} s {transition.type}"
    if source == "output":
        kind = f"default transition ({kind})"
    elif source == "defaults":
        kind = f"{kind} (from defaults)"
    between = f"the {kind} between {a.id!r} and {b.id!r}"
    (len_a, what_a), (len_b, what_b) = overrun.shown_a, overrun.shown_b
    want = round(transition.duration * fps)
    if want <= len_a and want <= len_b:
        # Each fits alone: the transition into `a` took the rest (the stitcher would
        # give this one only what that one left).
        into = f"{seconds_text(before.duration)} s {before.type}" if before else "transition"
        most = seconds_text(len_a / fps)
        return (
            f"{between} and the {into} into {a.id!r} together are longer than {a.id!r} ({what_a})",
            f"the two transitions may take at most {most} s of {a.id!r} together: "
            f"shorten one, or lengthen {a.id!r}",
        )
    short, frames, what = (b, len_b, what_b) if len_b <= len_a else (a, len_a, what_a)
    most = f"{seconds_text(frames / fps)} s"
    if source == "shot":
        hint = f"shorten the transition to at most {most}, or lengthen {short.id!r}"
    else:
        hint = f"shorten {source}.transition to at most {most}, or give {a.id!r} its own transition"
    return f"{between} is longer than {short.id!r} ({what})", hint
