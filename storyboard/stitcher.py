"""Stage 6, stitch: join the selected take of every shot into the final cut.

The cut is cached by its edit key: changing ``select``, ``trim``, a transition, a card or the
output settings re-stitches and renders nothing. A shot that extends another contributes only
its new footage; whether a provider returned source + new or only the new part is decided by
the model registry and checked against the clip's real length.

Nothing unverified enters a cut: before a stale cut is rebuilt, every clip it uses is read in
full and checked against its digest (:func:`verify_cut`, once per process and clip). A clip
that fails is dropped from the store (a cache miss) and the stitch stops with
:class:`~storyboard.errors.ClipCorrupt`; ``render`` checks the same before rendering, so the
clip is rendered or downloaded again in that run. A fresh cut that is reused reads nothing.

Each cut's record names the work files it uses and, beside it, the generation material of
each shot's clip in it (what ``plan`` compares an edited shot with to say why it is stale).
After a cut is written, the work files no current cut uses are pruned (:func:`prune_work`):
the cuts of every storyboard sharing the store keep theirs, so a warm re-stitch of any of
them stays a stream copy, and the store does not grow by a set of pieces per edit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from storyboard.cache import ClipEntry, Store
from storyboard.errors import ClipCorrupt, StitchError
from storyboard.hashing import canonical_json, sha256_bytes
from storyboard.media.footage import new_footage_offset
from storyboard.plan import Plan, check_cut, cut_record_name

if TYPE_CHECKING:  # the cutter pulls in media code: imported only when a cut is made
    from storyboard.cutter import CutSpec, Segment
    from storyboard.model import Storyboard
    from storyboard.workfolder import Pruned

__all__ = [
    "StitchResult",
    "cut_shots",
    "prune_work",
    "stitch",
    "verify_cut",
]


@dataclass(frozen=True)
class StitchResult:
    path: Path
    seconds: float
    reused: bool  # the cut was already up to date


def _display(path: Path) -> str:
    """A path as the user would type it (relative to the working folder when inside it)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def verify_cut(plan: Plan, store: Store) -> tuple[str, ...]:
    """Read every clip a stale cut uses in full; the shots whose clip failed and was dropped.

    A fresh cut (reused as it is) reads nothing. A clip whose bytes no longer match its
    digest is deleted from the store with its key's entry (see :meth:`Store.verified`), so a
    new plan sees that take as not rendered. Clips are hashed in parallel, each once per
    process.
    """
    if plan.stitch == "fresh":
        return ()
    clips: dict[str, tuple[ClipEntry, list[str]]] = {}
    for sp in plan.shots:
        sel = sp.selected
        if sp.kind == "model" and sel is not None and sel.clip is not None:
            clips.setdefault(sel.clip.key, (sel.clip, []))[1].append(sp.id)
    if not clips:
        return ()
    from concurrent.futures import ThreadPoolExecutor  # only when a cut is rebuilt

    entries = [entry for entry, _ in clips.values()]
    workers = max(1, min(len(entries), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
        good = list(pool.map(store.verified, entries))
    return tuple(
        shot
        for (_, shots), ok in zip(clips.values(), good, strict=True)
        if not ok
        for shot in shots
    )


def _corrupt(plan: Plan, shots: tuple[str, ...]) -> ClipCorrupt:
    """The error for clips that failed verification, with the command that brings them back."""
    names = ", ".join(shots)
    file = _display(plan.board.path)
    if plan.backend == "preview":
        hint = f"run `storyboard render {file}`: it renders {names} again (a preview is free)"
    else:
        hint = (
            f"run `storyboard plan {file} --live`: it shows whether {names} comes back for "
            "free (a journalled task is downloaded again) or must be bought again"
        )
    return ClipCorrupt(
        f"the stored clip of {names} no longer matches its digest (changed on disk); it was "
        "removed from the store and nothing was stitched",
        shots=shots,
        hint=hint,
    )


def segments(plan: Plan) -> list[Segment]:
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


def cut_spec(board: Storyboard) -> CutSpec:
    """The output settings of ``board``'s cut, as the cutter takes them."""
    from storyboard.cutter import CutSpec

    o = board.output
    width, height = o.size  # ``auto`` was resolved by validate: the shots' models' size
    return CutSpec(
        width=width,
        height=height,
        fps=o.fps,
        fit=o.fit,
        soundtrack=o.audio.media.path if o.audio is not None else None,
        volume=o.audio.volume if o.audio is not None else 1.0,
        fade_out=o.audio.fade_out if o.audio is not None else 0.0,
    )


def stitch(
    plan: Plan,
    store: Store,
    *,
    force: bool = False,
    progress: Callable[[float], None] | None = None,
) -> StitchResult:
    """Write the final cut of ``plan`` (or reuse it when its edit key is unchanged).

    Every clip of a cut that is rebuilt is first verified against its digest
    (:func:`verify_cut`); a reused cut reads no clip.

    Raises:
        ClipCorrupt: a clip of the cut no longer matches its digest (it was dropped from the
            store; nothing was written).
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
    corrupt = verify_cut(replace(plan, stitch="stale"), store)
    if corrupt:
        raise _corrupt(plan, corrupt)
    from storyboard.cutter import make_cut
    from storyboard.workfolder import work_lock

    spec = cut_spec(plan.board)
    segments_ = segments(plan)
    check_cut(plan)  # right before the first write: still inside the storyboard's tree
    plan.cut.parent.mkdir(parents=True, exist_ok=True)
    work = store.cuts_dir() / "work"
    name = cut_record_name(plan.cut)
    # Shared until the record names the files: a prune elsewhere cannot take them meanwhile.
    with work_lock(work):
        made = make_cut(segments_, spec, plan.cut, work, progress)
        st = os.stat(plan.cut)
        store.save_cut_shots(name, cut_shots(plan))
        store.save_cut_record(
            name,
            {
                "edit_key": plan.edit_key,
                "stat": [st.st_size, st.st_mtime_ns],
                "seconds": made.seconds,
                "path": str(plan.cut.absolute()),
            },
            files=made.files,
        )
    prune_work(store)
    return StitchResult(plan.cut, made.seconds, reused=False)


def cut_shots(plan: Plan) -> dict[str, dict[str, object]]:
    """What each shot's clip in the cut of ``plan`` was generated from, by shot id.

    The selected take's generation material, the number of takes and the seed as written:
    ``plan`` says why an edited shot is stale against these (the clip the cut uses), not
    against whatever was rendered last.
    """
    shots: dict[str, dict[str, object]] = {}
    for sp in plan.shots:
        sel = sp.selected
        if sp.kind == "model" and sel is not None:
            seed = sp.shot.seed if sp.shot.seed not in (None, -1) else None
            shots[sp.id] = {
                "material": sel.material.to_json(),
                "takes": len(sp.takes),
                "seed": seed,
            }
    return shots


def prune_work(store: Store) -> Pruned:
    """Remove the stitcher's work files that no current cut in ``store`` uses.

    Current cuts are those whose recorded file still exists, of every storyboard sharing
    the store (:meth:`Store.cut_files_in_use`). Skipped while a cut of this storyboard is
    being made (see :func:`storyboard.workfolder.prune`).
    """
    from storyboard.workfolder import prune

    return prune(store.cuts_dir() / "work", store.cut_files_in_use())
