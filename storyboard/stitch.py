"""Stage 6, stitch: join the selected take of every shot into the final cut.

The cut is cached by its edit key: changing ``select``, ``trim``, a transition, a card or the
output settings re-stitches and renders nothing. A shot that extends another contributes only
its new footage; whether a provider returned source + new or only the new part is decided by
the model registry and checked against the clip's real length.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from storyboard.cache import Store
from storyboard.errors import StitchError
from storyboard.hashing import canonical_json, sha256_bytes
from storyboard.models import frame_size
from storyboard.plan import Plan, cut_record_name

if TYPE_CHECKING:  # the cutter pulls in media code: imported only when a cut is made
    from storyboard.cutter import Segment

__all__ = ["StitchResult", "new_footage_offset", "stitch"]

# How far a clip's length may be from what the registry predicts before we say so.
_TOLERANCE = 0.35


@dataclass(frozen=True)
class StitchResult:
    path: Path
    seconds: float
    reused: bool  # the cut was already up to date


def new_footage_offset(
    actual: float, new_seconds: float, upstream_seconds: float | None, extend_output: str
) -> float:
    """Where the new footage starts in an extension clip.

    The registry says whether the provider returns source + new footage or only the new
    part; the clip's real length decides when the provider did otherwise.
    """
    if upstream_seconds is None:
        return 0.0
    with_source = upstream_seconds + new_seconds
    looks_with_source = abs(actual - with_source) < abs(actual - new_seconds)
    registry_says_source = extend_output == "source+new" and actual > new_seconds + _TOLERANCE
    if looks_with_source or registry_says_source:
        return max(0.0, actual - new_seconds)
    return 0.0


def _segments(plan: Plan) -> list[Segment]:
    """The pieces of the cut, in order; clip lengths come from the store (verified on entry)."""
    from storyboard.cutter import CardSpec, Segment

    out = plan.board.output
    shots = [sp for sp in plan.shots if sp.kind != "skipped"]
    durations: dict[str, float] = {}
    segments: list[Segment] = []
    for i, sp in enumerate(shots):
        shot = sp.shot
        transition = shot.transition or out.transition
        kind, seconds = (transition.type, transition.duration)
        if i == len(shots) - 1:
            kind, seconds = "cut", 0.0
        card = shot.card
        if card is not None:
            key = sha256_bytes(
                canonical_json(["card", card.text, card.duration, card.background, card.color])
            )
            segments.append(
                Segment(
                    clip=None,
                    card=CardSpec(card.text, card.duration, card.background, card.color),
                    transition=kind,
                    transition_seconds=seconds,
                    key=key,
                )
            )
            continue
        sel = sp.selected
        if sel is None or sel.clip is None:
            raise StitchError(f"shot {sp.id} is not rendered", shot=sp.id)
        clip = sel.clip
        durations[shot.id] = clip.seconds
        offset = 0.0
        if shot.extends and shot.spec is not None:
            offset = new_footage_offset(
                clip.seconds, sp.seconds, durations.get(shot.extends), shot.spec.extend_output
            )
        start = offset + (shot.trim.start if shot.trim else 0.0)
        end = None
        if shot.trim and shot.trim.end is not None:
            end = min(offset + shot.trim.end, clip.seconds)
        if start >= (end if end is not None else clip.seconds) - 1e-3:
            raise StitchError(
                f"shot {shot.id}: trim leaves nothing of its {clip.seconds - offset:.2f} s clip",
                shot=shot.id,
            )
        segments.append(
            Segment(
                clip=clip.path,
                card=None,
                start=start,
                end=end,
                transition=kind,
                transition_seconds=seconds,
                key=clip.digest,
            )
        )
    return segments


def stitch(
    plan: Plan,
    store: Store,
    *,
    force: bool = False,
    progress: Callable[[float], None] | None = None,
) -> StitchResult:
    """Write the final cut of ``plan`` (or reuse it when its edit key is unchanged).

    Raises:
        StitchError: a shot of the cut is not rendered, or ffmpeg failed.
    """
    missing = [sp.id for sp in plan.shots if sp.kind == "model" and sp.output is None]
    if missing or plan.edit_key is None:
        raise StitchError(
            f"{len(missing)} shot(s) of the cut are not rendered: {', '.join(missing)}",
            shot=missing[0] if missing else None,
        )
    if plan.stitch == "fresh" and not force:
        record = store.cut_record(cut_record_name(plan.cut)) or {}
        return StitchResult(plan.cut, float(record.get("seconds", 0.0)), reused=True)
    from storyboard.cutter import CutSpec, cut

    board = plan.board
    o = board.output
    width, height = frame_size(o.resolution, o.aspect_ratio)
    spec = CutSpec(
        width=width,
        height=height,
        fps=o.fps,
        fit=o.fit,
        soundtrack=o.audio.media.path if o.audio is not None else None,
        volume=o.audio.volume if o.audio is not None else 1.0,
        fade_out=o.audio.fade_out if o.audio is not None else 0.0,
    )
    segments = _segments(plan)
    plan.cut.parent.mkdir(parents=True, exist_ok=True)
    seconds = cut(segments, spec, plan.cut, store.cuts_dir() / "work", progress)
    st = os.stat(plan.cut)
    store.save_cut_record(
        cut_record_name(plan.cut),
        {"edit_key": plan.edit_key, "stat": [st.st_size, st.st_mtime_ns], "seconds": seconds},
    )
    return StitchResult(plan.cut, seconds, reused=False)
