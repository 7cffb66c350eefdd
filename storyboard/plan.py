"""Stage 4, plan: the DAG of shots, their keys, what is stale and why, and what it costs.

Two keys (ARCHITECTURE §1):

* the *generation key* of a shot's take is the sha256 of canonical JSON of everything that
  decides the pixels: format version, backend, provider, model, rendered prompt, every
  generation parameter with its default filled in, the take's seed, the take index, the
  sha256 of every input file, and the generation key of the upstream shot's selected take.
  It decides paid work.
* the *edit key* of the cut covers the output settings, each shot's selected clip digest,
  trim and transition, and the cards: it decides only re-stitching.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from storyboard.cache import ClipEntry, Store
from storyboard.errors import PlanError, UsageError
from storyboard.hashing import canonical_json, sha256_bytes
from storyboard.model import Media, Shot, Storyboard
from storyboard.models import PREVIEW_PROVIDER, ModelSpec
from storyboard.paths import VIDEO_CONTAINERS, preview_path, safe_output_path

__all__ = [
    "KEY_FORMAT",
    "Plan",
    "ShotPlan",
    "TakePlan",
    "check_cut",
    "cut_path",
    "generation_material",
    "make_plan",
    "take_price",
]

KEY_FORMAT = 1
Backend = Literal["preview", "live"]


@dataclass(frozen=True)
class TakePlan:
    """One take of one shot."""

    take: int  # 1-based
    key: str
    seed: int | None
    material: dict[str, Any] = field(compare=False, repr=False)
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


def _effective(shot: Shot, spec: ModelSpec) -> dict[str, Any]:
    """Generation parameters with the model's defaults filled in."""
    params: dict[str, Any] = {}
    if spec.durations is not None:
        params["duration"] = shot.duration if shot.duration is not None else spec.default_duration
    if spec.aspect_ratios:
        params["aspect_ratio"] = shot.aspect_ratio or spec.default_aspect_ratio
    if spec.resolutions:
        params["resolution"] = shot.resolution or spec.default_resolution
    if spec.cut_types:
        params["cut_type"] = shot.cut_type or spec.cut_types[0]
    if spec.provider == "qingbo":
        params["prompt_optimizer"] = (
            True if shot.prompt_optimizer is None else shot.prompt_optimizer
        )
        params["action"] = shot.action
    if shot.negative_prompt is not None:
        params["negative_prompt"] = shot.negative_prompt
    if shot.params:
        params["params"] = dict(shot.params)
    return params


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


def take_seed(shot: Shot, take: int) -> int | None:
    """The seed of a take: seed, seed+1, ...; ``None`` means random (resolved at submit).

    Take seeds stay inside the model's seed range: past its top they wrap round to 0 (V1:
    seed 2147483647 with 3 takes sends 2147483647, 0, 1), so no take sends a seed the
    provider refuses, and the takes' seeds stay distinct.
    """
    if shot.seed is None or shot.seed == -1:
        return None
    seed = shot.seed + take - 1
    spec = shot.spec
    if spec is not None and spec.seed_range is not None:
        high = spec.seed_range[1]
        if seed > high:
            seed %= high + 1
    return seed


def generation_material(
    shot: Shot,
    spec: ModelSpec,
    take: int,
    backend: Backend,
    digest: Any,
    upstream_key: str | None,
) -> dict[str, Any]:
    """Everything that decides the pixels of one take, as plain data (hashed into the key).

    ``digest`` maps a :class:`Media` to its sha256 (URLs are keyed by the URL itself).
    """

    def d(media: Media) -> str:
        return str(digest(media))

    inputs: dict[str, Any] = {}
    if shot.first_frame is not None:
        inputs["first_frame"] = d(shot.first_frame)
    if shot.last_frame is not None:
        inputs["last_frame"] = d(shot.last_frame)
    if shot.keyframes:
        # A tag is sent (mid_frame_images[].tag); untagged keyframes keep their old keys.
        inputs["keyframes"] = [
            [k.at, d(k.image), *([k.tag] if k.tag is not None else [])] for k in shot.keyframes
        ]
    if shot.refs:
        inputs["refs"] = [
            {
                "tag": r.tag,
                "grid": r.grid,
                "images": [d(m) for m in r.images],
                "audio": d(r.audio) if r.audio else None,
            }
            for r in shot.refs
        ]
    if shot.audio:
        inputs["audio"] = [d(m) for m in shot.audio]
    if shot.reference_video is not None:
        inputs["reference_video"] = d(shot.reference_video)
    # The preview backend draws the caption from the shot id, so the id is material there.
    material: dict[str, Any] = {
        "format": KEY_FORMAT,
        "backend": backend,
        "provider": PREVIEW_PROVIDER if backend == "preview" else spec.provider,
        "model": spec.id,
        "endpoint": spec.endpoint,
        "prompt": shot.prompt,
        "params": _effective(shot, spec),
        "seed": take_seed(shot, take),
        "take": take,
        "inputs": inputs,
        "upstream": {"mode": "extends" if shot.extends else "continues", "key": upstream_key}
        if upstream_key
        else None,
    }
    if backend == "preview":
        material["caption"] = shot.id
    return material


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


def _journal_reason(facts: Any, shot_id: str, now: float) -> str:
    """Why a take the journal holds is stale, from the journal's facts (``JournalFacts``)."""
    state = facts.state
    gone = facts.output_expires is not None and facts.output_expires <= now
    if state in ("intent", "unknown"):
        reason = facts.next_step or "unsettled"
    elif state in ("submitted", "done") and gone:
        reason = f"{state}-gone"
    else:
        reason = state
    return _JOURNAL_REASONS[reason].format(id=shot_id)


def _key(material: dict[str, Any]) -> str:
    return sha256_bytes(canonical_json(material))


def _why(
    previous: dict[str, Any] | None,
    now: dict[str, Any],
    shot: Shot,
    sources: dict[str, str],
) -> str:
    """Say in a few words why a shot whose key is not in the store is stale."""
    if previous is None:
        return "not rendered yet"
    if previous == now:
        return "clip missing from the store"
    changes: list[str] = []
    for name in ("model", "prompt"):
        if previous.get(name) != now.get(name):
            changes.append(f"{name} changed")
    old_params, new_params = previous.get("params") or {}, now.get("params") or {}
    for name in sorted(set(old_params) | set(new_params)):
        if old_params.get(name) != new_params.get(name):
            changes.append(f"{name} changed")
    if previous.get("seed") != now.get("seed"):
        changes.append("seed changed")
    old_in, new_in = previous.get("inputs") or {}, now.get("inputs") or {}
    old_digests = set(_flatten(old_in))
    for digest in _flatten(new_in):
        if digest not in old_digests and digest in sources:
            changes.append(f"{sources[digest]} changed")
    if not changes and old_in != new_in:
        changes.append("inputs changed")
    if previous.get("upstream") != now.get("upstream"):
        changes.append(f"upstream {shot.upstream} changed" if shot.upstream else "upstream removed")
    if not changes:
        changes.append("settings changed")
    seen: list[str] = []
    for c in changes:
        if c not in seen:
            seen.append(c)
    return ", ".join(seen[:3]) + (f" (+{len(seen) - 3} more)" if len(seen) > 3 else "")


def _flatten(value: Any) -> Iterable[str]:
    if isinstance(value, str) and len(value) == 64:
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _flatten(v)
    elif isinstance(value, list):
        for v in value:
            yield from _flatten(v)


def make_plan(
    board: Storyboard,
    store: Store,
    *,
    backend: Backend = "preview",
    only: Iterable[str] = (),
    force: Iterable[str] = (),
    force_all: bool = False,
    output: Path | None = None,
) -> Plan:
    """Plan a render: keys, staleness and cost of every shot, and the state of the cut.

    Raises:
        UsageError: ``--only`` or ``--force`` name a shot that does not exist.
        PlanError: an input file changed or vanished since validation.
        LockUnreadable: (live) the lock file exists but cannot be read.
    """
    ids = {s.id for s in board.shots}
    only_set, force_set = set(only), set(force)
    for flag, names in (("--only", only_set), ("--force", force_set)):
        unknown = sorted(names - ids)
        if unknown:
            raise UsageError(
                f"{flag} names no shot {', '.join(map(repr, unknown))}",
                hint="shots: " + ", ".join(s.id for s in board.shots),
            )

    sources: dict[str, str] = {}

    def digest(media: Media) -> str:
        if media.path is None:
            return f"url:{media.source}"
        try:
            value = store.memo.digest(media.path)
        except OSError as exc:
            raise PlanError(
                f"cannot read {media.source!r}: {exc.strerror}",
                hint="run `storyboard validate` and fix the path",
            ) from exc
        sources[value] = media.source
        return value

    # A live render's lock names the clip of every take: with the object in the store, a
    # take is fresh even when the store's own index does not know the key (another checkout).
    locked: dict[str, dict[str, Any]] = {}
    journalled: dict[str, Any] = {}
    if backend == "live":
        from storyboard.journal import read_facts
        from storyboard.lockfile import lock_index

        locked = lock_index(board.path)
        # Takes an earlier run submitted are resumed, not bought again (unless forced).
        journalled = dict(read_facts(store.root / "journal.sqlite"))

    def lookup(key: str, shot_id: str, take: int) -> ClipEntry | None:
        entry = store.lookup(key)
        record = locked.get(key)
        if entry is None and record is not None and isinstance(record.get("output"), str):
            info = {
                k: record.get(k)
                for k in ("provider", "task_id", "cost", "reported_cost", "seed", "time")
            }
            entry = store.link(
                key,
                record["output"],
                seconds=float(record.get("duration") or 0.0),
                shot=shot_id,
                take=take,
                info=info,
            )
        return entry

    plans: dict[str, ShotPlan] = {}
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
        for n in range(1, shot.takes + 1):
            material = generation_material(shot, spec, n, backend, digest, upstream_key)
            key = _key(material)
            clip = None if forced else lookup(key, shot.id, n)
            takes.append(TakePlan(n, key, take_seed(shot, n), material, clip))
        seconds = spec.clip_seconds(shot.duration)
        per_take = take_price(shot, spec)
        stale = [t for t in takes if not t.fresh]
        paid = [] if forced else [t for t in stale if t.key in journalled]
        if forced:
            reason = "forced"
        elif not stale:
            reason = "up to date"
        elif paid and len(paid) == len(stale):
            reason = _journal_reason(journalled[paid[0].key], shot.id, time.time())
        else:
            previous = store.last_material(backend, shot.id)
            reason = _why(previous, stale[0].material, shot, sources)
        new = len(stale) - len(paid)
        cost = 0.0 if backend == "preview" else round(per_take * new, 6)
        plans[shot.id] = ShotPlan(
            shot=shot,
            kind="model",
            status="stale" if stale else "fresh",
            reason=reason,
            cost=cost,
            live_cost=round(per_take * shot.takes, 6),
            takes=tuple(takes),
            seconds=seconds,
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

    shots = tuple(plans[s.id] for s in board.shots)
    out = cut_path(board, backend, output)
    edit_key = _edit_key(board, shots, out, store)
    record = store.cut_record(cut_record_name(out))
    stitch: Literal["fresh", "stale"] = "stale"
    if edit_key is not None and record is not None and record.get("edit_key") == edit_key:
        try:
            st = out.stat()
            if [st.st_size, st.st_mtime_ns] == record.get("stat"):
                stitch = "fresh"
        except OSError:
            pass
    forced_ids = {sp.id for sp in shots if sp.kind == "model" and (force_all or sp.id in force_set)}
    return Plan(
        board, backend, shots, out, edit_key, stitch, frozenset(selected),
        only=frozenset(only_set), forced=frozenset(forced_ids),
    )  # fmt: skip


def cut_record_name(out: Path) -> str:
    return sha256_bytes(str(out).encode())[:16]


def edit_material(
    board: Storyboard, shots: Iterable[ShotPlan], out: Path, store: Store
) -> dict[str, Any] | None:
    """What decides the final cut, or ``None`` when a clip it needs is not rendered."""
    o = board.output
    entries: list[dict[str, Any]] = []
    for sp in shots:
        shot = sp.shot
        if sp.kind == "skipped":
            continue
        transition = shot.transition or o.transition
        entry: dict[str, Any] = {
            "id": shot.id,
            "transition": [transition.type, transition.duration],
        }
        if sp.kind == "card":
            card = shot.card
            if card is None:
                continue
            entry["card"] = [card.text, card.duration, card.background, card.color]
        else:
            sel = sp.selected
            if sel is None or sel.clip is None:
                return None
            entry["clip"] = sel.clip.digest
            entry["trim"] = [shot.trim.start, shot.trim.end] if shot.trim else None
            entry["new_seconds"] = sp.seconds
            if shot.extends and shot.spec is not None:
                entry["extend_output"] = shot.spec.extend_output
        entries.append(entry)
    soundtrack = None
    if o.audio is not None:
        media = o.audio.media
        source = store.memo.digest(media.path) if media.path else media.source
        soundtrack = [source, o.audio.volume, o.audio.fade_out]
    return {
        "format": KEY_FORMAT,
        "output": [str(out), o.fps, o.resolution, o.aspect_ratio, o.fit],
        "shots": entries,
        "soundtrack": soundtrack,
    }


def _edit_key(board: Storyboard, shots: Iterable[ShotPlan], out: Path, store: Store) -> str | None:
    material = edit_material(board, shots, out, store)
    return None if material is None else _key(material)
