"""Checks a ``render --live`` makes before its first upload or submit (issue 7, item 5).

Everything that would make a take of this run impossible is found up front and reported
together, so a run never pays for an upstream shot and then stops at its dependant:

* a provider the run needs has no API key, or one that cannot be a key (a control,
  non-ASCII or whitespace character inside, an absurd length): the variable is named, and
  what is wrong with it, never the value or any part of it;
* a take sends a local file (first/last frame, keyframes, refs and their audio, audio, a
  reference video) to a provider that takes only URLs, and no provider that can host files
  has its key set;
* a take ``continues`` another (the upstream's last frame is always a local file) or
  ``extends`` a clip the provider has no URL for, with no way to host it.

Which providers can host files, and which variable holds each key, is the provider table's
data (:mod:`storyboard.providers`), not a matter of their names. The key check imports httpx,
so it is imported inside :func:`preflight`, never on the ``validate`` path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from storyboard.errors import CannotStart, Obstacle
from storyboard.providers import PROVIDERS, ProviderEntry, hosts

if TYPE_CHECKING:
    from storyboard.journal import Journal
    from storyboard.model import Media, Shot
    from storyboard.plan import Plan, ShotPlan, TakePlan

__all__ = ["local_inputs", "preflight"]

# Journal states whose take is not submitted again by this run: resumed (submitted, done)
# or reported as failed. Every other take (new, or an intent/unknown the provider may take
# again under the same idempotency key) goes through upload and submit.
_NOT_RESUBMITTED = frozenset({"submitted", "done", "failed"})


def local_inputs(shot: Shot) -> Iterator[tuple[str, Media]]:
    """``(field, media)`` for every local file a shot sends (URLs are sent as they are)."""
    named: list[tuple[str, Media]] = []
    if shot.first_frame is not None:
        named.append(("first_frame", shot.first_frame))
    if shot.last_frame is not None:
        named.append(("last_frame", shot.last_frame))
    named.extend(("keyframe", k.image) for k in shot.keyframes)
    for ref in shot.refs:
        named.extend(("ref", image) for image in ref.images)
        if ref.audio is not None:
            named.append(("ref audio", ref.audio))
    named.extend(("audio", a) for a in shot.audio)
    if shot.reference_video is not None:
        named.append(("reference_video", shot.reference_video))
    seen: set[str] = set()
    for field, media in named:
        if media.path is not None and media.source not in seen:
            seen.add(media.source)
            yield field, media


def preflight(
    plan: Plan,
    *,
    journal: Journal | None,
    forced: set[str] | frozenset[str] = frozenset(),
    environ: Mapping[str, str] | None = None,
) -> None:
    """Raise :class:`CannotStart` listing every obstacle of this live run, or return.

    Args:
        plan: The live plan; its ``to_render`` shots are what this run renders.
        journal: The task journal (which takes are resumed, which provider URLs of earlier
            outputs are still valid); ``None`` knows nothing.
        forced: Shots whose takes are submitted again whatever the journal says.
        environ: The environment to read keys from (default ``os.environ``).

    Raises:
        CannotStart: with one :class:`~storyboard.errors.Obstacle` per shot and problem.
    """
    from storyboard.providers._http import key_problem

    env = os.environ if environ is None else environ

    def has_key(prov: ProviderEntry) -> bool:
        return prov.key_var is None or bool(env.get(prov.key_var, "").strip())

    def bad_key(prov: ProviderEntry) -> str | None:
        """What is wrong with the provider's key, if it is set and unusable."""
        value = env.get(prov.key_var, "").strip() if prov.key_var else ""
        return key_problem(value) if value else None

    able = hosts()
    hosting_ready = any(has_key(prov) and bad_key(prov) is None for prov in able)
    host_vars = " or ".join(c.key_var for c in able if c.key_var) or "a hosting provider's key"
    host_var = able[0].key_var if able else None
    rendered_now = {
        sp.selected.key
        for sp in plan.to_render
        if sp.selected is not None and not sp.selected.fresh
    }

    def submits(sp: ShotPlan, take: TakePlan) -> bool:
        if sp.id in forced or journal is None:
            return True
        known = journal.get(take.key)
        return known is None or known.state not in _NOT_RESUBMITTED

    obstacles: list[Obstacle] = []
    for sp in plan.to_render:
        shot, spec = sp.shot, sp.shot.spec
        if spec is None:  # pragma: no cover - cards and skipped shots are never rendered
            continue
        prov = PROVIDERS.get(spec.provider)
        if prov is None:  # pragma: no cover - the catalogue names only providers of the table
            continue
        if not has_key(prov):
            obstacles.append(
                Obstacle(
                    shot.id,
                    f"{prov.key_var} is not set; {spec.id} runs on {prov.label}",
                    provider=prov.name,
                    env_var=prov.key_var,
                )
            )
        elif (problem := bad_key(prov)) is not None:
            obstacles.append(
                Obstacle(
                    shot.id,
                    f"{prov.key_var} {problem}; {spec.id} runs on {prov.label}",
                    provider=prov.name,
                    env_var=prov.key_var,
                )
            )
        if prov.can_host_files or hosting_ready:
            continue  # local files are uploaded (by this provider, or the hosting one)
        if not any(submits(sp, take) for take in sp.stale_takes):
            continue  # every take is resumed: nothing is uploaded
        unusable = [f"{h.key_var} {bad_key(h)}" for h in able if bad_key(h) is not None]
        why = (
            f"{prov.label} takes only URLs and {host_vars} is not set to host it"
            if not unusable
            else f"{prov.label} takes only URLs and {'; '.join(unusable)}, so it cannot host it"
        )
        for field, media in local_inputs(shot):
            obstacles.append(
                Obstacle(
                    shot.id,
                    f"{field} {media.source} is a local file; {why}",
                    provider=prov.name,
                    env_var=host_var,
                    local_input=True,
                )
            )
        if shot.continues:
            obstacles.append(
                Obstacle(
                    shot.id,
                    f"continues {shot.continues}: its last frame is a local file; {why}",
                    provider=prov.name,
                    env_var=host_var,
                    local_input=True,
                )
            )
        elif shot.extends:
            upstream = plan.shot(shot.extends).selected
            key = upstream.key if upstream is not None else None
            provider_url = key is not None and (
                key in rendered_now  # rendered by this run: the provider's URL is journalled
                or (journal is not None and journal.output_url(key) is not None)
            )
            if not provider_url:
                obstacles.append(
                    Obstacle(
                        shot.id,
                        f"extends {shot.extends}: its clip is a local file with no valid "
                        f"provider URL; {why}",
                        provider=prov.name,
                        env_var=host_var,
                        local_input=True,
                    )
                )
    if obstacles:
        raise CannotStart(obstacles)
