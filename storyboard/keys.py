"""The two keys (ARCHITECTURE §1), as pure functions of the storyboard and file digests.

* the *generation key* of a shot's take is the sha256 of canonical JSON of its
  :class:`GenerationMaterial`: everything that decides the pixels (format version, backend,
  provider, model, rendered prompt, every generation parameter with its default filled in,
  the take's seed, the take index, the sha256 of every input file, and the generation key
  of the upstream shot's selected take). It decides paid work.
* the *edit key* of the cut covers the output settings, each shot's selected clip digest,
  trim and transition, and the cards: it decides only re-stitching.

Nothing here reads a file or the store: digests come in through a function, so the plan
decides where they come from (the store's memo) and tests can pass their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from storyboard.catalog import PREVIEW_PROVIDER, ModelSpec
from storyboard.hashing import canonical_json, sha256_bytes
from storyboard.model import Media, Shot, Storyboard

__all__ = [
    "KEY_FORMAT",
    "Backend",
    "CutClip",
    "GenerationMaterial",
    "ShotKind",
    "UpstreamLink",
    "edit_key",
    "edit_material",
    "generation_key",
    "generation_material",
    "shot_kind",
    "take_seed",
]

KEY_FORMAT = 1
Backend = Literal["preview", "live"]
ShotKind = Literal["model", "card", "skipped"]
#: Maps an input file to its sha256 (a URL is keyed by the URL itself: ``url:<source>``).
Digest = Callable[[Media], str]


@dataclass(frozen=True)
class UpstreamLink:
    """The shot a take builds on: how (``extends``/``continues``) and its selected take's key."""

    mode: Literal["extends", "continues"]
    key: str

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "key": self.key}


@dataclass(frozen=True)
class GenerationMaterial:
    """Everything that decides the pixels of one take; its key is the sha256 of :meth:`to_json`.

    ``params`` are the generation parameters with the model's defaults filled in (a shot's
    own ``params`` pass through under ``params["params"]``); ``inputs`` maps an input slot
    (``first_frame``, ``refs``, ``keyframes``, ...) to the digests of its files, shaped as
    the slot is. ``caption`` is the shot id on the preview backend, which draws it.
    """

    backend: Backend
    provider: str
    model: str
    endpoint: str
    prompt: str
    params: Mapping[str, Any]
    seed: int | None
    take: int
    inputs: Mapping[str, Any]
    upstream: UpstreamLink | None = None
    caption: str | None = None
    format: int = KEY_FORMAT

    def to_json(self) -> dict[str, Any]:
        """The material as plain data: what is hashed, recorded in the store and the lock."""
        data: dict[str, Any] = {
            "format": self.format,
            "backend": self.backend,
            "provider": self.provider,
            "model": self.model,
            "endpoint": self.endpoint,
            "prompt": self.prompt,
            "params": dict(self.params),
            "seed": self.seed,
            "take": self.take,
            "inputs": dict(self.inputs),
            "upstream": self.upstream.to_json() if self.upstream is not None else None,
        }
        if self.caption is not None:
            data["caption"] = self.caption
        return data


def generation_key(material: GenerationMaterial) -> str:
    """The generation key of a take: sha256 of its material's canonical JSON."""
    return sha256_bytes(canonical_json(material.to_json()))


def shot_kind(shot: Shot) -> ShotKind:
    """What a shot is in the cut: rendered by a model, a title card drawn locally, or skipped."""
    if shot.skip:
        return "skipped"
    if shot.card is not None or shot.spec is None:
        return "card"
    return "model"


def effective_params(shot: Shot, spec: ModelSpec) -> dict[str, Any]:
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
    if "prompt_optimizer" in spec.accepts:
        params["prompt_optimizer"] = (
            True if shot.prompt_optimizer is None else shot.prompt_optimizer
        )
    if "action" in spec.accepts:
        params["action"] = shot.action
    if shot.negative_prompt is not None:
        params["negative_prompt"] = shot.negative_prompt
    if shot.params:
        params["params"] = dict(shot.params)
    return params


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
    digest: Digest,
    upstream_key: str | None,
) -> GenerationMaterial:
    """Everything that decides the pixels of one take (hashed into its generation key).

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
    upstream = None
    if upstream_key:
        upstream = UpstreamLink("extends" if shot.extends else "continues", upstream_key)
    return GenerationMaterial(
        backend=backend,
        provider=PREVIEW_PROVIDER if backend == "preview" else spec.provider,
        model=spec.id,
        endpoint=spec.endpoint,
        prompt=shot.prompt,
        params=effective_params(shot, spec),
        seed=take_seed(shot, take),
        take=take,
        inputs=inputs,
        upstream=upstream,
        # The preview backend draws the caption from the shot id, so the id is material there.
        caption=shot.id if backend == "preview" else None,
    )


@dataclass(frozen=True)
class CutClip:
    """The clip the cut uses for one shot: its digest and the new footage it contributes."""

    digest: str
    seconds: float


def edit_material(
    board: Storyboard,
    clips: Mapping[str, CutClip],
    out: Path,
    digest: Digest,
) -> dict[str, Any] | None:
    """What decides the final cut at ``out``, or ``None`` when a clip it needs is missing.

    ``clips`` maps each rendered shot's id to its selected clip; a model shot not in it is
    not rendered yet. ``digest`` maps the soundtrack to its sha256.
    """
    o = board.output
    entries: list[dict[str, Any]] = []
    for shot in board.shots:
        kind = shot_kind(shot)
        if kind == "skipped":
            continue
        transition = shot.transition or o.transition
        entry: dict[str, Any] = {
            "id": shot.id,
            "transition": [transition.type, transition.duration],
        }
        if kind == "card":
            card = shot.card
            if card is None:
                continue
            entry["card"] = [card.text, card.duration, card.background, card.color]
        else:
            clip = clips.get(shot.id)
            if clip is None:
                return None
            entry["clip"] = clip.digest
            entry["trim"] = [shot.trim.start, shot.trim.end] if shot.trim else None
            entry["new_seconds"] = clip.seconds
            if shot.extends and shot.spec is not None:
                entry["extend_output"] = shot.spec.extend_output
        entries.append(entry)
    soundtrack = None
    if o.audio is not None:
        media = o.audio.media
        source = digest(media) if media.path else media.source
        soundtrack = [source, o.audio.volume, o.audio.fade_out]
    return {
        "format": KEY_FORMAT,
        "output": [str(out), o.fps, o.resolution, o.aspect_ratio, o.fit],
        "shots": entries,
        "soundtrack": soundtrack,
    }


def edit_key(
    board: Storyboard, clips: Mapping[str, CutClip], out: Path, digest: Digest
) -> str | None:
    """The edit key of the cut at ``out`` (see :func:`edit_material`), ``None`` while a clip
    it needs is missing."""
    material = edit_material(board, clips, out, digest)
    return None if material is None else sha256_bytes(canonical_json(material))
