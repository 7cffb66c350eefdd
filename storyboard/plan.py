"""Stage 4, plan: the DAG of shots, their keys, what is stale and why, and what it costs.

The keys themselves are :mod:`storyboard.keys` (pure). Planning is read-only: it reads the
store (stat-only lookups, the digest memo, the records of earlier renders and cuts) and what
the pipeline tells it the lock and the journal know (:class:`Facts`), and writes nothing.
A clip found only through the lock comes back in :attr:`Plan.adopted` for the pipeline to
record in the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol

from storyboard.cache import ClipEntry, Provenance, Store
from storyboard.catalog import ModelSpec
from storyboard.errors import PlanError, StoryboardError, UsageError
from storyboard.hashing import sha256_bytes
from storyboard.keys import (
    Backend,
    CutClip,
    GenerationMaterial,
    edit_key,
    generation_key,
    generation_material,
    take_seed,
)
from storyboard.model import Media, Shot, Storyboard
from storyboard.paths import VIDEO_CONTAINERS, preview_path, safe_output_path

__all__ = [
    "Facts",
    "LockedTake",
    "Plan",
    "Reason",
    "ShotPlan",
    "TakePlan",
    "TaskFacts",
    "check_cut",
    "check_selection",
    "cut_path",
    "cut_record_name",
    "make_plan",
    "say",
    "take_price",
]


# Where a generation input comes from, by the material's name for it (an input "slot").
_INPUT_SLOTS = ("first_frame", "last_frame", "keyframes", "refs", "audio", "reference_video")
# The longest value a reason shows; a longer one is only said to have changed, and so is prose.
_SHORT = 24
_PROSE = frozenset({"prompt", "negative_prompt"})


@dataclass(frozen=True)
class Reason:
    """One reason a shot is stale: what changed, from what, to what.

    ``field`` names what changed:

    * a generation setting (``duration``, ``seed``, ``resolution``, ``aspect_ratio``,
      ``negative_prompt``, ``params``, ...), ``prompt`` or ``model``: ``old`` and ``new``
      are its values in the clip the cut uses and in the storyboard now (``None``: unset;
      for ``seed``, random);
    * an input slot (``refs``, ``first_frame``, ``keyframes``, ...): ``old``/``new`` are the
      digests, ``name`` the file or URL now;
    * ``upstream``: the shot it builds on (``name``) made another clip;
    * ``take``: take ``new`` was added (``old``: how many takes there were);
    * ``clip``: the clip is gone from the store (``name``: the take, when there are several);
    * ``render``: never rendered; ``force``: ``--force``; ``task``: a take an earlier live
      run paid for (``new``: its journal state, ``name``: the shot); ``remote``: ``new``
      takes a render pulls from the remote; ``settings``: another endpoint or provider.

    ``str()`` says it for people (``duration 5 → 6``, ``prompt changed``, ``refs/bird.png
    changed``); :meth:`to_json` is the ``plan --json`` form.
    """

    field: str
    old: Any = None
    new: Any = None
    name: str | None = None

    def __str__(self) -> str:
        f = self.field
        if f == "render":
            return "not rendered yet"
        if f == "force":
            return "forced"
        if f == "remote":
            many = f"{self.new} takes " if isinstance(self.new, int) and self.new > 1 else ""
            return f"{many}on the project's remote: pulled, not paid"
        if f == "task":
            return _JOURNAL_REASONS[str(self.new)].format(id=self.name)
        if f == "take":
            return f"take {self.new} added"
        if f == "clip":
            where = f"take {self.name}: " if self.name else ""
            return f"{where}clip missing from the store"
        if f == "settings":
            return "settings changed"
        if f == "upstream":
            if self.new is None:
                return "upstream removed"
            return f"upstream {self.name} {'added' if self.old is None else 'changed'}"
        if f in _INPUT_SLOTS:
            if self.new is None:
                return f"{f} removed"
            return f"{self.name or f} {'added' if self.old is None else 'changed'}"
        if f != "seed" and (self.old is None or self.new is None):
            return f"{f} {'added' if self.old is None else 'removed'}"
        if f in _PROSE:
            return f"{f} changed"  # prose reads badly as old → new: plan --json has both
        old, new = _shown(f, self.old), _shown(f, self.new)
        if old is None or new is None:
            return f"{f} changed"
        return f"{f} {old} → {new}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"field": self.field, "old": self.old, "new": self.new}
        if self.name is not None:
            data["name"] = self.name
        return data


def _shown(field_name: str, value: Any) -> str | None:
    """A value as a reason shows it, or ``None`` when it is too long to show."""
    if value is None:
        text = "random" if field_name == "seed" else "none"
    elif isinstance(value, str):
        text = value if value and not any(c.isspace() for c in value) else json.dumps(value)
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))  # a duration of 5.0 s reads as 5, as it was written
    else:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text if len(text) <= _SHORT and "\n" not in text else None


def say(reasons: Sequence[Reason]) -> str:
    """Reasons in a few words: the first three, and how many more."""
    words: list[str] = []
    added = [str(r.new) for r in reasons if r.field == "take"]
    for r in reasons:
        many = r.field == "take" and len(added) > 1
        text = f"takes {', '.join(added)} added" if many else str(r)
        if text not in words:
            words.append(text)
    if not words:
        return "up to date"
    more = len(words) - 3
    return ", ".join(words[:3]) + (f" (+{more} more)" if more > 0 else "")


@dataclass(frozen=True)
class TakePlan:
    """One take of one shot."""

    take: int  # 1-based
    key: str
    seed: int | None
    material: GenerationMaterial = field(compare=False, repr=False)
    clip: ClipEntry | None = None  # in the store already

    @property
    def fresh(self) -> bool:
        return self.clip is not None


@dataclass(frozen=True)
class ShotPlan:
    """What render would do for one shot."""

    shot: Shot
    kind: Literal["model", "card", "skipped"]
    status: Literal["fresh", "stale"]
    reason: str
    cost: float  # what this render would spend on the shot (0 for preview)
    live_cost: float  # what rendering all its takes live costs
    takes: tuple[TakePlan, ...] = ()
    seconds: float = 0.0  # length of the new footage each take contributes
    reasons: tuple[Reason, ...] = ()  # why it is stale, structured (``reason`` says it)
    on_remote: tuple[int, ...] = ()  # (live plan) stale takes the project's remote holds

    @property
    def id(self) -> str:
        return self.shot.id

    @property
    def selected(self) -> TakePlan | None:
        if not self.takes:
            return None
        return self.takes[self.shot.select - 1]

    @property
    def output(self) -> Path | None:
        """The clip the cut uses for this shot, when it is rendered."""
        sel = self.selected
        return sel.clip.path if sel is not None and sel.clip is not None else None

    @property
    def stale_takes(self) -> tuple[TakePlan, ...]:
        return tuple(t for t in self.takes if not t.fresh)


@dataclass(frozen=True)
class Plan:
    """The whole plan of a storyboard for one backend."""

    board: Storyboard
    backend: Backend
    shots: tuple[ShotPlan, ...]
    cut: Path
    edit_key: str | None  # None while some clip of the cut is not rendered
    stitch: Literal["fresh", "stale"]
    selected: frozenset[str]  # shots this run is limited to (--only), empty = all
    only: frozenset[str] = frozenset()  # the shots --only named (selected adds their upstreams)
    forced: frozenset[str] = frozenset()  # the shots --force/--force-all render again
    # Clips found only through the lock (another checkout's store index lacks their keys):
    # fresh in this plan; the pipeline records them in the store (planning writes nothing).
    adopted: tuple[ClipEntry, ...] = ()
    remote_problem: str | None = None  # (live) why the remote could not be looked in

    @property
    def cost(self) -> float:
        return round(sum(s.cost for s in self.shots), 6)

    def in_scope(self, shot_id: str) -> bool:
        """Whether this run may render the shot (``--only`` limits it)."""
        return not self.selected or shot_id in self.selected

    def will_render(self, shot_id: str, take: int | None = None) -> bool:
        """Whether this run renders the shot (or one of its takes): stale and in scope."""
        sp = self.shot(shot_id)
        if sp.kind != "model" or not self.in_scope(shot_id):
            return False
        return any(not t.fresh for t in sp.takes if take is None or t.take == take)

    @property
    def missing(self) -> tuple[str, ...]:
        """The shots of the cut with no rendered clip yet (the cut cannot be stitched)."""
        return tuple(sp.id for sp in self.shots if sp.kind == "model" and sp.output is None)

    @property
    def to_render(self) -> tuple[ShotPlan, ...]:
        """The shots this run renders: stale takes, within ``--only``."""
        return tuple(sp for sp in self.shots if sp.stale_takes and self.in_scope(sp.id))

    def shot(self, shot_id: str) -> ShotPlan:
        for one in self.shots:
            if one.id == shot_id:
                return one
        raise KeyError(shot_id)

    def to_json(self) -> dict[str, Any]:
        """The ``plan --json`` shape of CONTRACT/issue 3 (plus a few extra keys)."""
        return {
            "storyboard": str(self.board.path),
            "backend": self.backend,
            "shots": [
                {
                    "id": s.id,
                    "model": s.shot.model,
                    "kind": s.kind,
                    "status": s.status,
                    "reason": s.reason,
                    "reasons": [r.to_json() for r in s.reasons],
                    "cost": s.cost,
                    "live_cost": s.live_cost,
                    "takes": len(s.takes),
                    "select": s.shot.select if s.takes else None,
                    "keys": [t.key for t in s.takes],
                    "upstream": s.shot.upstream,
                    "output": str(s.output) if s.output else None,
                    # --only limits rendering; a card is drawn with the cut, so always in.
                    "in_scope": s.kind == "card" or (s.kind == "model" and self.in_scope(s.id)),
                    "will_render": self.will_render(s.id),
                    "take_plan": [
                        {
                            "take": t.take,
                            "seed": t.seed,
                            "fresh": t.fresh,
                            "will_render": self.will_render(s.id, t.take),
                            "on_remote": t.take in s.on_remote,
                        }
                        for t in s.takes
                    ],
                }
                for s in self.shots
            ],
            "only": sorted(self.only),
            "forced": sorted(self.forced),
            "to_render": [s.id for s in self.to_render],
            "missing": list(self.missing),
            "cost": self.cost,
            "stitch": self.stitch,
            "cut": str(self.cut),
            "format": self.board.output.to_json(),  # the cut's, ``auto`` resolved
            "remote_problem": self.remote_problem,
            "edit_key": self.edit_key,
        }


def cut_path(board: Storyboard, backend: Backend, override: Path | None = None) -> Path:
    """Where the final cut goes: preview cuts add ``.preview`` before the suffix.

    ``override`` (``-o``) is the user's own choice and is returned as given. The storyboard's
    own ``output.path`` is checked (again: validate checked it) to stay inside the
    storyboard's folder tree with no link out, and to name a video container.

    Raises:
        UnsafePath: the storyboard's cut would be written outside its tree.
    """
    if override is not None:
        return override
    path = board.output.path
    if backend == "preview":
        path = preview_path(path)
    safe_output_path(board.path.parent, path, suffixes=VIDEO_CONTAINERS, what="cut")
    return path


def check_cut(plan: Plan) -> Path:
    """``plan.cut``, checked once more right before it is written (a link may have appeared
    since the plan was made); a cut the user chose with ``-o`` is not confined.

    Raises:
        UnsafePath: the storyboard's cut would now be written outside its tree.
    """
    own = plan.board.output.path
    if plan.backend == "preview":
        own = preview_path(own)
    if plan.cut != own:
        return plan.cut
    return cut_path(plan.board, plan.backend)


def take_price(shot: Shot, spec: ModelSpec) -> float:
    """The list price in USD of one take of ``shot``: what the plan estimates and the lock keeps.

    Billed on the requested duration, not on the frame count the model writes; a reference
    or extension video takes the surcharged rate.
    """
    video_ref = shot.extends is not None or shot.reference_video is not None
    billed = shot.duration if shot.duration is not None else spec.default_duration
    return spec.price.estimate(
        seconds=billed,
        resolution=shot.resolution or spec.default_resolution,
        video_ref=video_ref,
    )


# Why a live take the journal knows is still stale, and what the next render does about it.
# The words agree with what the render then says (storyboard.live): an unsettled submit by
# its journalled next step, a lost clip by whether the provider still serves its output.
_JOURNAL_REASONS = {
    "resend": "submit outcome unknown: the next render resends it with the same "
    "Idempotency-Key, which the provider bills once",
    "look": "submit outcome unknown: the next render looks for its task in the provider's "
    "task list before anything is bought",
    "force": "submit outcome unknown, and the provider's task list shows no such task: "
    "--force {id} submits again",
    "unsettled": "submit outcome unknown: the next render settles it before anything is bought",
    "submitted": "submitted earlier: the next render resumes it, no new cost",
    "submitted-gone": "submitted earlier, but the provider no longer has its output: "
    "--force {id} buys it again",
    "failed": "the provider's task failed: --force {id} submits again",
    "done": "rendered, but the clip is gone from the store: the next render downloads it again",
    "done-gone": "rendered, but the clip is gone from the store and the provider no longer "
    "has it (its link expired): --force {id} buys it again",
}


class TaskFacts(Protocol):
    """What the journal knows about a generation key (:class:`storyboard.journal.JournalFacts`)."""

    @property
    def state(self) -> str: ...

    @property
    def next_step(self) -> str | None: ...

    @property
    def output_expires(self) -> float | None: ...


class LockedTake(Protocol):
    """What the lock knows about a take (:class:`storyboard.lockfile.LockRecord`)."""

    @property
    def output(self) -> str: ...

    @property
    def duration(self) -> float: ...

    @property
    def provenance(self) -> Provenance: ...


@dataclass(frozen=True)
class Facts:
    """What the lock and the journal know, read by the pipeline and given to the plan.

    Attributes:
        locked: generation key -> the lock's record of that take (a live render's lock names
            the clip of every take: with the object in the store, the take is fresh even
            when the store's own index does not know the key, as in another checkout).
        tasks: generation key -> the journal's facts of a take an earlier live run submitted
            (resumed, not bought again, unless forced).
        remote: keys the project's remote holds: a render pulls them for nothing.
    """

    locked: Mapping[str, LockedTake] = field(default_factory=dict)
    tasks: Mapping[str, TaskFacts] = field(default_factory=dict)
    remote: frozenset[str] = frozenset()


def _journal_reason(facts: TaskFacts, shot_id: str, now: float) -> Reason:
    """Why a take the journal holds is stale, from the journal's facts."""
    state = facts.state
    gone = facts.output_expires is not None and facts.output_expires <= now
    if state in ("intent", "unknown"):
        reason = facts.next_step or "unsettled"
    elif state in ("submitted", "done") and gone:
        reason = f"{state}-gone"
    else:
        reason = state
    return Reason("task", None, reason if reason in _JOURNAL_REASONS else "unsettled", shot_id)


@dataclass(frozen=True)
class _Previous:
    """What the clip a shot compares with was generated from (see :func:`_previous`)."""

    material: dict[str, Any]
    seed: int | None  # the shot's seed as written (None: random)
    takes: int | None  # how many takes the shot had (None: not known)

    @property
    def take(self) -> int:
        take = self.material.get("take")
        return take if isinstance(take, int) else 1


def _previous(
    cut: dict[str, Any] | None, store: Store, backend: Backend, shot_id: str
) -> _Previous | None:
    """What the clip the cut uses for ``shot_id`` now was generated from.

    The cut's own record of it (written by stitch: the selected take's material), so an
    edit is compared with the clip on screen, not with what was rendered last (a take since
    deselected, a setting since undone). A shot the cut has no clip of yet falls back to
    what the shot was last rendered from (take 1, recorded by render).
    """
    entry = (cut or {}).get(shot_id)
    if isinstance(entry, dict) and isinstance(entry.get("material"), dict):
        material = entry["material"]
        if material.get("backend") == backend:
            seed, takes = entry.get("seed"), entry.get("takes")
            return _Previous(
                material,
                seed if isinstance(seed, int) else None,
                takes if isinstance(takes, int) else None,
            )
    material = store.last_material(backend, shot_id)
    if material is None:
        return None
    seed = material.get("seed") if material.get("take", 1) == 1 else None
    return _Previous(material, seed if isinstance(seed, int) else None, None)


def _why(
    previous: _Previous | None,
    takes: Sequence[TakePlan],
    shot: Shot,
    sources: dict[str, str],
    store: Store,
) -> tuple[Reason, ...]:
    """Why a shot with stale takes is stale, against the clip the cut uses (``previous``).

    The settings are compared take for take (the cut's take with the same take now), so a
    seed reads as the shot's seed; when they are the same, what is stale is a take: one
    added since, or one whose clip is gone from the store.
    """
    if previous is None:
        return (Reason("render"),)
    p = previous.take
    base = takes[p - 1] if 1 <= p <= len(takes) else takes[shot.select - 1]
    seed = shot.seed if shot.seed != -1 else None
    changes = _changes(previous, base.material.to_json(), seed, shot, sources)
    if changes:
        return changes
    reasons: list[Reason] = []
    for t in takes:
        if t.fresh:
            continue
        if previous.takes is not None:
            added = t.take > previous.takes
        else:  # rendered before when its key is indexed (its clip since lost)
            added = t.take != p and not store.knows(t.key)
        if added:
            reasons.append(Reason("take", previous.takes, t.take))
        else:
            reasons.append(Reason("clip", name=str(t.take) if len(takes) > 1 else None))
    return tuple(reasons)


def _changes(
    previous: _Previous,
    now: dict[str, Any],
    seed: int | None,
    shot: Shot,
    sources: dict[str, str],
) -> tuple[Reason, ...]:
    """What differs between two generation materials of the same take, field by field."""
    old = previous.material
    changes: list[Reason] = []
    model_changed = old.get("model") != now.get("model")
    if model_changed:
        changes.append(Reason("model", old.get("model"), now.get("model")))
    if old.get("prompt") != now.get("prompt"):
        changes.append(Reason("prompt", old.get("prompt"), now.get("prompt")))
    old_params, new_params = old.get("params") or {}, now.get("params") or {}
    for name in sorted(set(old_params) | set(new_params)):
        if old_params.get(name) == new_params.get(name):
            continue
        if model_changed and (name not in old_params or name not in new_params):
            continue  # a setting only one of the models has: the model change says it
        changes.append(Reason(name, old_params.get(name), new_params.get(name)))
    if previous.seed != seed:
        changes.append(Reason("seed", previous.seed, seed))
    changes.extend(_input_changes(old.get("inputs") or {}, now.get("inputs") or {}, sources))
    old_up, new_up = old.get("upstream"), now.get("upstream")
    if old_up != new_up:
        changes.append(Reason("upstream", old_up, new_up, shot.upstream))
    if not changes and {k: v for k, v in old.items() if k not in ("seed", "take")} != {
        k: v for k, v in now.items() if k not in ("seed", "take")
    }:
        changes.append(Reason("settings"))
    return tuple(changes)


def _input_changes(
    old: dict[str, Any], new: dict[str, Any], sources: dict[str, str]
) -> list[Reason]:
    """Which input files changed, were added or removed, slot by slot."""
    changes: list[Reason] = []
    slots = [*_INPUT_SLOTS, *sorted((set(old) | set(new)) - set(_INPUT_SLOTS))]
    for slot in slots:
        before, after = old.get(slot), new.get(slot)
        if before == after:
            continue
        if after is None:
            changes.append(Reason(slot, before, None))
            continue
        old_files, new_files = list(_files(before)), list(_files(after))
        fresh = [(i, d) for i, d in enumerate(new_files) if d not in set(old_files)]
        for i, digest in fresh:
            # Changed when it took the place of a file no longer used, else added.
            replaced = i < len(old_files) and old_files[i] not in set(new_files)
            name = sources.get(digest) or (digest[4:] if digest.startswith("url:") else None)
            changes.append(Reason(slot, old_files[i] if replaced else None, digest, name))
        if not fresh:  # reordered, a keyframe's time or tag, or a file removed
            changes.append(Reason(slot, before, after))
    return changes


def _files(value: Any) -> Iterable[str]:
    """The digests (and ``url:`` sources) inside an input slot of a material, in order."""
    if isinstance(value, str) and (len(value) == 64 or value.startswith("url:")):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _files(v)
    elif isinstance(value, list):
        for v in value:
            yield from _files(v)


def check_selection(board: Storyboard, only: Iterable[str], force: Iterable[str]) -> None:
    """Check that ``--only`` and ``--force`` name shots of ``board``.

    Raises:
        UsageError: one of them names a shot that does not exist.
    """
    ids = {s.id for s in board.shots}
    for flag, names in (("--only", set(only)), ("--force", set(force))):
        unknown = sorted(names - ids)
        if unknown:
            raise UsageError(
                f"{flag} names no shot {', '.join(map(repr, unknown))}",
                hint="shots: " + ", ".join(s.id for s in board.shots),
            )


def make_plan(
    board: Storyboard,
    store: Store,
    *,
    backend: Backend = "preview",
    only: Iterable[str] = (),
    force: Iterable[str] = (),
    force_all: bool = False,
    output: Path | None = None,
    facts: Facts | None = None,
    board_id: str | None = None,
) -> Plan:
    """Plan a render: keys, staleness and cost of every shot, and the state of the cut.

    Read-only: nothing is written to the store (its index learns what was read, kept by
    :meth:`Store.save`). ``facts`` is what the lock and the journal know (a live plan without
    them plans as if neither existed; the pipeline reads them, see
    :func:`storyboard.pipeline.known_facts`). ``board_id``: the identity of the checked
    board in the store (:attr:`storyboard.boardcache.Checked.identity`); with it, the keys
    the last plan of the same board and inputs made are used for the takes found in the
    store (a no-op hashes no material), and every other take's key is made from its
    material and must be the same, else the plan is made again without them.

    Raises:
        UsageError: ``--only`` or ``--force`` name a shot that does not exist.
        PlanError: an input file changed or vanished since validation.
    """
    only_set, force_set = set(only), set(force)
    check_selection(board, only_set, force_set)
    known = facts if facts is not None else Facts()

    sources: dict[str, str] = {}

    digests: dict[Path, str] = {}  # a file many shots name is looked at once per plan

    def digest(media: Media) -> str:
        if media.path is None:
            return f"url:{media.source}"
        value = digests.get(media.path)
        if value is None:
            try:
                value = digests[media.path] = store.memo.digest(media.path)
            except OSError as exc:
                raise PlanError(
                    f"cannot read {media.source!r}: {exc.strerror}",
                    hint="run `storyboard validate` and fix the path",
                ) from exc
        sources[value] = media.source
        return value

    # The keys the last plan of this very board made, for the same input files.
    inputs: dict[str, str] = {}
    memo: Mapping[str, Sequence[str]] | None = None
    if board_id is not None:
        for media in (m for s in board.shots if not s.skip for m in s.media()):
            if media.path is not None:
                inputs[str(media.path)] = digest(media)
        memo = store.index.generation_keys(board_id, backend, inputs)
    made: dict[str, list[str]] = {}

    adopted: list[ClipEntry] = []

    def lookup(key: str, shot_id: str, take: int) -> ClipEntry | None:
        entry = store.lookup(key)
        record = known.locked.get(key)
        if entry is None and record is not None:
            entry = store.locate(
                key,
                record.output,
                seconds=float(record.duration or 0.0),
                shot=shot_id,
                take=take,
                provenance=record.provenance,
            )
            if entry is not None:
                adopted.append(entry)
        return entry

    plans: dict[str, ShotPlan] = {}
    cut_shots: dict[str, Any] | None = None  # read once, only when a shot is stale
    for shot in board.shots:
        spec = shot.spec
        if shot.skip:
            plans[shot.id] = ShotPlan(shot, "skipped", "fresh", "skipped", 0.0, 0.0)
            continue
        if shot.card is not None or spec is None:
            plans[shot.id] = ShotPlan(shot, "card", "fresh", "title card (drawn locally)", 0.0, 0.0)
            continue
        upstream_key: str | None = None
        if shot.upstream:
            sel = plans[shot.upstream].selected
            upstream_key = sel.key if sel is not None else None
        forced = force_all or shot.id in force_set
        takes: list[TakePlan] = []
        known_keys = memo.get(shot.id) if memo is not None else None
        if known_keys is not None and len(known_keys) != shot.takes:
            known_keys = None
        for n in range(1, shot.takes + 1):
            material = generation_material(shot, spec, n, backend, digest, upstream_key)
            key = known_keys[n - 1] if known_keys is not None else generation_key(material)
            clip = None if forced else lookup(key, shot.id, n)
            if clip is None and known_keys is not None and generation_key(material) != key:
                # A remembered key that is not the material's: forget them all, plan again.
                store.index.forget_keys(backend)
                return make_plan(
                    board, store, backend=backend, only=only_set, force=force_set,
                    force_all=force_all, output=output, facts=facts, board_id=board_id,
                )  # fmt: skip
            made.setdefault(shot.id, []).append(key)
            takes.append(TakePlan(n, key, take_seed(shot, n), material, clip))
        seconds = spec.clip_seconds(shot.duration)
        per_take = take_price(shot, spec)
        stale = [t for t in takes if not t.fresh]
        paid = [] if forced else [t for t in stale if t.key in known.tasks]
        pulled = [] if forced else [t for t in stale if t.key in known.remote and t not in paid]
        reasons: tuple[Reason, ...] = ()
        if forced:
            reasons = (Reason("force"),)
        elif paid and len(paid) == len(stale):
            reasons = (_journal_reason(known.tasks[paid[0].key], shot.id, time.time()),)
        elif stale:
            if cut_shots is None:
                cut_shots = _cut_shots(board, backend, output, store)
            previous = _previous(cut_shots, store, backend, shot.id)
            reasons = _why(previous, takes, shot, sources, store)
        if pulled:
            reasons = (Reason("remote", new=len(pulled)), *reasons)
        new = len(stale) - len(paid) - len(pulled)
        cost = 0.0 if backend == "preview" else round(per_take * new, 6)
        plans[shot.id] = ShotPlan(
            shot=shot,
            kind="model",
            status="stale" if stale else "fresh",
            reason=say(reasons),
            cost=cost,
            live_cost=round(per_take * shot.takes, 6),
            takes=tuple(takes),
            seconds=seconds,
            reasons=reasons,
            on_remote=tuple(t.take for t in pulled),
        )

    selected: set[str] = set()
    if only_set:
        # --only renders the named shots and whatever they need upstream.
        for name in only_set:
            current: str | None = name
            while current is not None and current not in selected:
                selected.add(current)
                current = board.shot(current).upstream
        for shot_id, sp in list(plans.items()):
            if shot_id not in selected and sp.kind == "model":
                plans[shot_id] = replace(sp, cost=0.0)  # not rendered by this run

    if board_id is not None and made != memo:
        store.index.remember_keys(board_id, backend, inputs, made)
    shots = tuple(plans[s.id] for s in board.shots)
    out = cut_path(board, backend, output)
    clips = {
        sp.id: CutClip(sp.selected.clip.digest, sp.seconds)
        for sp in shots
        if sp.kind == "model" and sp.selected is not None and sp.selected.clip is not None
    }
    cut_key = edit_key(board, clips, out, partial(_memo_digest, store))
    record = store.cut_record(cut_record_name(out))
    stitch: Literal["fresh", "stale"] = "stale"
    if cut_key is not None and record is not None and record.get("edit_key") == cut_key:
        try:
            st = out.stat()
            if [st.st_size, st.st_mtime_ns] == record.get("stat"):
                stitch = "fresh"
        except OSError:
            pass
    forced_ids = {sp.id for sp in shots if sp.kind == "model" and (force_all or sp.id in force_set)}
    return Plan(
        board, backend, shots, out, cut_key, stitch, frozenset(selected),
        only=frozenset(only_set), forced=frozenset(forced_ids), adopted=tuple(adopted),
    )  # fmt: skip


def _memo_digest(store: Store, media: Media) -> str:
    """The digest of a local file from the store's memo (the soundtrack, for the edit key)."""
    if media.path is None:
        return f"url:{media.source}"
    return store.memo.digest(media.path)


def _cut_shots(
    board: Storyboard, backend: Backend, output: Path | None, store: Store
) -> dict[str, Any]:
    """What each shot's clip in the current cut was generated from (``{}`` if unknown)."""
    try:
        out = cut_path(board, backend, output)
    except StoryboardError:
        return {}  # reported where the cut is made
    return store.cut_shots(cut_record_name(out)) or {}


def cut_record_name(out: Path) -> str:
    """The name of the store's records of the cut at ``out``."""
    return sha256_bytes(str(out).encode())[:16]
