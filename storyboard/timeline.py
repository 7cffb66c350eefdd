"""The cut as a timeline: what each shot contributes, where, for how many frames.

One description of the stitched cut that the review page, the contact sheet and the
timeline exports share, computed with the cutter's own arithmetic (:func:`cutter.layout`)
so that each of them matches the MP4 to the frame: item ``i`` lasts ``frames`` frames of
its clip from ``source_start`` seconds, begins at frame ``record_start`` of the cut and
overlaps the next item by ``transition_frames`` (0: a hard cut).

Nothing here encodes video; a clip never seen by the cutter is probed once for its length
(remembered in the store's work folder, as a cut does).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

from storyboard.cache import Store
from storyboard.errors import StitchError
from storyboard.plan import Plan, ShotPlan

__all__ = ["Item", "Soundtrack", "Timeline", "timeline_of"]


@dataclass(frozen=True)
class Item:
    """One entry of the cut: a shot's selected take (``kind="clip"``) or a title card."""

    shot: str
    kind: Literal["clip", "card"]
    frames: int  # how long it is seen in the cut, transitions included
    record_start: int  # frame of the cut where it begins
    source_start: float  # second of the clip where it begins (0 for a card)
    transition: str  # how it joins the next item: "cut", "crossfade", "fade", "wipe-left", ...
    transition_frames: int  # frames it overlaps the next item (0 for a hard cut)
    path: Path | None = None  # the stored clip (None for a card)
    digest: str | None = None  # sha256 of the clip (its store object name)
    clip_seconds: float | None = None  # length of the whole clip file
    take: int | None = None  # the selected take (1-based)
    takes: int = 0
    model: str | None = None
    prompt: str | None = None  # the rendered prompt
    key: str | None = None  # the take's generation key
    cost: float | None = None  # list price, USD (0 for a preview clip)
    provider: str | None = None
    task_id: str | None = None
    card_text: str | None = None
    card_background: str | None = None
    card_color: str | None = None


@dataclass(frozen=True)
class Soundtrack:
    """The cut's music bed: looped or cut to the picture, at ``volume``, faded at the end."""

    path: Path
    volume: float
    fade_out: float


@dataclass(frozen=True)
class Timeline:
    """The whole cut: items in order at ``fps``, ``frames`` long."""

    name: str
    cut: Path  # where the stitched MP4 is (or would be)
    backend: str
    fps: int
    width: int
    height: int
    items: tuple[Item, ...]
    soundtrack: Soundtrack | None
    frames: int

    @property
    def seconds(self) -> float:
        return float(Fraction(self.frames, self.fps))

    def source_frame(self, item: Item) -> int:
        """Where ``item`` begins in its clip, in frames of the cut's rate (nearest frame)."""
        return round(item.source_start * self.fps)

    @property
    def spent(self) -> float:
        """The list price of the clips the cut uses, USD."""
        return round(sum(i.cost or 0.0 for i in self.items), 6)


def _item_facts(sp: ShotPlan) -> dict[str, object]:
    sel = sp.selected
    if sel is None or sel.clip is None:
        raise StitchError(
            f"shot {sp.id} is not rendered: render it before exporting or reviewing the cut",
            shot=sp.id,
        )
    clip = sel.clip
    prov = clip.provenance
    cost = prov.cost if prov.cost is not None else (0.0 if sp.cost == 0 else None)
    return {
        "path": clip.path,
        "digest": clip.digest,
        "clip_seconds": clip.seconds,
        "take": sel.take,
        "takes": len(sp.takes),
        "model": sp.shot.model,
        "prompt": sel.material.prompt,
        "key": sel.key,
        "cost": cost,
        "provider": prov.provider or sel.material.provider,
        "task_id": prov.task_id,
    }


def timeline_of(plan: Plan, store: Store) -> Timeline:
    """The timeline of ``plan``'s cut (every shot of the cut must be rendered).

    Raises:
        StitchError: a shot of the cut is not rendered, or a clip cannot be read.
    """
    from storyboard.cutter import layout
    from storyboard.stitcher import cut_spec, segments

    spec = cut_spec(plan.board)
    shots = [sp for sp in plan.shots if sp.kind != "skipped"]
    facts = [
        {} if sp.kind == "card" else _item_facts(sp)  # raises before anything is probed
        for sp in shots
    ]
    segs = segments(plan)
    lay = layout(segs, spec, store.cuts_dir() / "work")
    offsets = lay.offsets
    items: list[Item] = []
    for i, (sp, seg, fact) in enumerate(zip(shots, segs, facts, strict=True)):
        join = lay.joins[i] if i < len(lay.joins) else 0
        card = sp.shot.card
        items.append(
            Item(
                shot=sp.id,
                kind="card" if card is not None else "clip",
                frames=lay.frames[i],
                record_start=offsets[i],
                source_start=lay.starts[i] if card is None else 0.0,
                transition=seg.transition if join else "cut",
                transition_frames=join,
                card_text=card.text if card is not None else None,
                card_background=card.background if card is not None else None,
                card_color=card.color if card is not None else None,
                **fact,  # type: ignore[arg-type]
            )
        )
    sound = None
    if spec.soundtrack is not None:
        sound = Soundtrack(spec.soundtrack, spec.volume, spec.fade_out)
    return Timeline(
        name=plan.board.title or plan.board.path.stem,
        cut=plan.cut,
        backend=plan.backend,
        fps=spec.fps,
        width=spec.width,
        height=spec.height,
        items=tuple(items),
        soundtrack=sound,
        frames=lay.total,
    )
