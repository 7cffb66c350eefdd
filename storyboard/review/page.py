"""The review page: one self-contained folder a reviewer opens, zips or sends (issue 11 item 1).

:func:`write_review` writes ``index.html`` and, beside it in ``media/``, copies of everything
the page shows: the stitched cut, every rendered take and a JPEG poster for each (a frame
from the middle of the clip's own footage: the first frame is often black after a fade).
Media are named by content digest, so a rerun copies and draws only what changed, and media
the new page no longer shows are removed.

The page loads nothing from the network (no CDN, no web font; CSS and JS inline) and works
from ``file://``. Its Content-Security-Policy allows only the inline style and script (by
their sha256) and media of the page's own origin (for ``file://`` pages Chromium counts any
local file as the page's origin; the page itself names only ``media/``). Everything the
storyboard's author wrote (ids, prompts, titles, card text) is HTML-escaped; the script's
data is JSON with ``<``, ``>``, ``&`` and U+2028/U+2029 escaped, so no text can end the
``<script>`` element.

With ``selectable=True`` (``storyboard review --serve``) every rendered take that is not the
selected one gets a "select take N" button; the click POSTs ``{"shot", "take"}`` to
``/api/select`` with the session token from the page's URL, then reloads the page.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storyboard.errors import StitchError, UsageError
from storyboard.hashing import atomic_write, sha256_file
from storyboard.media import ffmpeg

if TYPE_CHECKING:
    from storyboard.cache import ClipEntry, Store
    from storyboard.plan import Plan, ShotPlan, TakePlan
    from storyboard.takecheck import TakeCheck
    from storyboard.timeline import Item, Timeline

__all__ = [
    "GENERATOR",
    "ICON",
    "MEDIA",
    "ClipGone",
    "ReviewFolderError",
    "ReviewPage",
    "script_json",
    "write_review",
]

#: What marks an ``index.html`` as written here (never overwrite somebody else's page).
GENERATOR = "storyboard review"
MEDIA = "media"
ICON = "icon.svg"  # beside index.html: browsers ask a server for an icon anyway
_NAME = 20  # hex digits of the content digest in a media file's name
_MEDIA_RE = re.compile(rf"^[0-9a-f]{{{_NAME}}}\.(mp4|jpg)$")
_POSTER_WIDTH = 640
_POSTER_TIMEOUT = 60.0


@dataclass(frozen=True)
class ReviewPage:
    """A written review folder: ``index`` inside ``folder``, with its media beside it.

    ``shots`` counts the shots listed (the cut's shots and cards), ``takes`` the playable
    takes, ``media_bytes`` the size of the media the page uses.
    """

    index: Path
    folder: Path
    shots: int
    takes: int
    media_bytes: int


class ReviewFolderError(UsageError):
    """The review folder cannot be written (exit 2): not a folder, unwritable, or it holds
    an ``index.html`` that storyboard did not write."""

    def __init__(self, folder: Path, reason: str) -> None:
        super().__init__(f"cannot write the review page to {folder}: {reason}")
        self.folder = folder
        self.reason = reason

    def hint(self) -> str | None:
        return "storyboard review -o DIR FILE  (DIR: an empty or earlier review folder)"


class ClipGone(StitchError):
    """A clip (a take, or the cut) vanished before the page could copy it."""

    def __init__(self, what: str, path: Path) -> None:
        super().__init__(f"{what} is gone ({path}): it vanished while the page was written")
        self.what = what
        self.path = path

    def hint(self) -> str | None:
        return "storyboard render FILE  (renders and stitches what is missing again)"


# -- media --------------------------------------------------------------------------------


@dataclass
class _Media:
    """The ``media/`` folder of a review: copies and posters named by content digest."""

    folder: Path
    used: dict[str, int] = field(default_factory=dict)  # file name -> bytes

    def _keep(self, name: str) -> str:
        self.used[name] = (self.folder / name).stat().st_size
        return f"{MEDIA}/{name}"

    def video(self, digest: str, source: Path, what: str) -> str:
        """``source`` copied as ``media/<digest>.mp4`` (unless it is there already)."""
        name = f"{digest[:_NAME]}.mp4"
        dest = self.folder / name
        try:
            if not (dest.is_file() and dest.stat().st_size == source.stat().st_size):
                tmp = dest.with_name(f".{name}.{os.getpid()}.tmp")
                try:
                    shutil.copyfile(source, tmp)
                    os.replace(tmp, dest)
                finally:
                    tmp.unlink(missing_ok=True)
        except FileNotFoundError as exc:
            if not source.is_file():
                raise ClipGone(what, source) from exc
            raise ReviewFolderError(self.folder.parent, str(exc)) from exc
        except OSError as exc:
            raise ReviewFolderError(self.folder.parent, exc.strerror or str(exc)) from exc
        return self._keep(name)

    def poster(self, digest: str, source: Path, at: float, shot: str) -> str:
        """A JPEG of ``source``'s frame at ``at`` seconds as ``media/<digest>.jpg``."""
        name = f"{digest[:_NAME]}.jpg"
        dest = self.folder / name
        if not (dest.is_file() and dest.stat().st_size > 0):
            tmp = dest.with_name(f".{name}.{os.getpid()}.tmp")
            args = [
                "-ss", f"{max(at, 0.0):.3f}", "-i", str(source), "-map", "0:v:0",
                "-frames:v", "1", "-an", "-sn", "-dn",
                "-vf", f"scale='min({_POSTER_WIDTH},iw)':-2,format=yuvj420p",
                "-c:v", "mjpeg", "-q:v", "4", "-f", "image2", "-update", "1", str(tmp),
            ]  # fmt: skip
            try:
                ffmpeg.run(args, what=f"cannot draw the poster of {shot}", timeout=_POSTER_TIMEOUT)
                if not tmp.is_file() or tmp.stat().st_size == 0:
                    # A seek past the last decodable frame writes nothing: take the first.
                    args[1] = "0"
                    ffmpeg.run(
                        args, what=f"cannot draw the poster of {shot}", timeout=_POSTER_TIMEOUT
                    )
                os.replace(tmp, dest)
            except OSError as exc:
                raise ReviewFolderError(self.folder.parent, exc.strerror or str(exc)) from exc
            finally:
                tmp.unlink(missing_ok=True)
        return self._keep(name)

    def prune(self) -> None:
        """Remove media (and leftover temporary files) the page no longer uses."""
        for path in self.folder.iterdir():
            name = path.name
            ours = _MEDIA_RE.match(name) or (name.startswith(".") and name.endswith(".tmp"))
            if ours and name not in self.used and path.is_file():
                path.unlink(missing_ok=True)


def _prepare(out_dir: Path) -> _Media:
    folder = out_dir.absolute()
    if folder.exists() and not folder.is_dir():
        raise ReviewFolderError(folder, "it is a file, not a folder")
    index = folder / "index.html"
    if index.exists():
        try:
            head = index.read_text(encoding="utf-8", errors="replace")[:2000]
        except OSError as exc:
            raise ReviewFolderError(folder, exc.strerror or str(exc)) from exc
        if f'content="{GENERATOR}"' not in head:
            raise ReviewFolderError(folder, "its index.html was not written by storyboard review")
    try:
        (folder / MEDIA).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReviewFolderError(folder, exc.strerror or str(exc)) from exc
    return _Media(folder / MEDIA)


# -- what the page shows --------------------------------------------------------------------


@dataclass(frozen=True)
class _Take:
    number: int
    selected: bool
    seed: int | None
    video: str | None = None  # relative path of the copy, None: not rendered
    poster: str | None = None
    seconds: float | None = None
    cost: float | None = None
    findings: tuple[tuple[str, str], ...] | None = None  # (kind, text); None: not checked


@dataclass(frozen=True)
class _Shot:
    plan: ShotPlan
    number: int
    item: Item | None
    takes: tuple[_Take, ...]
    spent: float | None  # None: some rendered take's cost is not known


def _new_footage_start(sp: ShotPlan, clip: ClipEntry) -> float:
    """Where an extension's own footage starts in its clip (0 for any other shot)."""
    if sp.shot.extends is None or sp.seconds <= 0:
        return 0.0
    return max(0.0, clip.seconds - sp.seconds)


def _take(
    sp: ShotPlan,
    tp: TakePlan,
    media: _Media,
    checks: Mapping[tuple[str, int], TakeCheck] | None,
    backend: str,
) -> _Take:
    selected = tp.take == sp.shot.select
    clip = tp.clip
    if clip is None:
        return _Take(tp.take, selected, tp.seed)
    start = _new_footage_start(sp, clip)
    video = media.video(clip.digest, clip.path, f"the clip of {sp.id} take {tp.take}")
    poster = media.poster(clip.digest, clip.path, start + (clip.seconds - start) / 2, sp.id)
    findings: tuple[tuple[str, str], ...] | None = None
    if checks is not None:
        check = checks.get((sp.id, tp.take))
        if check is not None:
            findings = tuple((f.kind, f.text) for f in check.findings)
    cost = clip.provenance.cost
    if cost is None and backend == "preview":
        cost = 0.0
    return _Take(tp.take, selected, tp.seed, video, poster, clip.seconds, cost, findings)


def _shots(
    plan: Plan,
    timeline: Timeline | None,
    media: _Media,
    checks: Mapping[tuple[str, int], TakeCheck] | None,
) -> list[_Shot]:
    items = {item.shot: item for item in timeline.items} if timeline is not None else {}
    shots: list[_Shot] = []
    for sp in plan.shots:
        if sp.kind == "skipped":
            continue
        takes = tuple(_take(sp, tp, media, checks, plan.backend) for tp in sp.takes)
        costs = [t.cost for t in takes if t.video is not None]
        spent = None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)
        shots.append(_Shot(sp, len(shots) + 1, items.get(sp.id), takes, spent))
    return shots


@dataclass(frozen=True)
class _Cut:
    video: str
    poster: str


def _cut(plan: Plan, timeline: Timeline, media: _Media) -> _Cut | None:
    """The cut's copy and poster, when the stitched cut is the current storyboard's."""
    if plan.stitch != "fresh" or not plan.cut.is_file():
        return None
    try:
        digest = sha256_file(plan.cut)
    except OSError:
        return None
    video = media.video(digest, plan.cut, "the cut")
    clips = [i for i in timeline.items if i.kind == "clip"]
    if clips:  # the middle of the longest shot: never a card, a seam or a fade
        longest = max(clips, key=lambda i: i.frames)
        at = (longest.record_start + longest.frames / 2) / timeline.fps
    else:
        at = timeline.seconds / 2
    return _Cut(video, media.poster(digest, plan.cut, at, "the cut"))


# -- HTML -----------------------------------------------------------------------------------


def _asset(name: str) -> str:
    return (resources.files("storyboard.review") / "assets" / name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def script_json(value: Any) -> str:
    """``value`` as JSON that is safe inside a ``<script>`` element of an HTML page."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, code in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, code)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _colour(value: str | None, fallback: str) -> str:
    """A colour as ``#rrggbb`` (Pillow's reading of CSS names and hex), else ``fallback``."""
    from PIL import ImageColor

    try:
        r, g, b = ImageColor.getrgb(value or fallback)[:3]
    except ValueError:
        r, g, b = ImageColor.getrgb(fallback)[:3]
    return f"#{r:02x}{g:02x}{b:02x}"


def _money(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"${value:,.3f}" if 0 < value < 0.01 else f"${value:,.2f}"


def _secs(value: float) -> str:
    return f"{value:.1f} s" if value < 60 else f"{int(value // 60)}:{value % 60:04.1f}"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.4f}%" if whole else "0%"


def _tick_step(seconds: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if seconds / step <= 10:
            return step
    return 1200.0


def _card_face(cls: str, text: str | None) -> str:
    return f'<div class="card-face {cls}">{escape(text or "")}</div>'


class _Writer:
    """Builds the page's HTML and the per-page CSS (positions, card colours) beside it."""

    def __init__(
        self,
        plan: Plan,
        timeline: Timeline | None,
        selectable: bool,
        blocked: Mapping[tuple[str, int], tuple[str, ...]] | None = None,
    ) -> None:
        self.plan = plan
        self.timeline = timeline
        self.selectable = selectable
        self.blocked = blocked or {}
        self.css: list[str] = []
        self.posters: dict[str, str] = {}  # shot id -> poster of its selected take

    def card_class(self, key: str, background: str | None, color: str | None) -> str:
        cls = f"paint-{key}"
        bg, fg = _colour(background, "#000000"), _colour(color, "#ffffff")
        self.css.append(f".{cls}{{background:{bg};color:{fg}}}")
        return cls

    # -- the top --------------------------------------------------------------------------

    def header(self, shots: list[_Shot]) -> str:
        plan, tl = self.plan, self.timeline
        board = plan.board
        title = board.title or board.path.stem
        live = plan.backend == "live"
        facts: list[tuple[str, str]] = []
        if tl is not None:
            facts.append(
                ("length", f"{_secs(tl.seconds)} <small>{tl.frames} frames at {tl.fps} fps</small>")
            )
        facts.append(("shots", str(len(shots))))
        rendered = sum(1 for s in shots for t in s.takes if t.video is not None)
        facts.append(("takes", f"{rendered} <small>rendered</small>"))
        list_price = round(sum(s.plan.live_cost for s in shots), 6)
        if live:
            if tl is not None:
                facts.append(("spent on the cut", _money(tl.spent)))
            every = [t.cost for s in shots for t in s.takes if t.video is not None]
            total = None if any(c is None for c in every) else sum(c or 0.0 for c in every)
            facts.append(("all rendered takes", _money(total)))
            note = (
                "<strong>Live render</strong> with the hosted models. Money is list price: "
                "what the clips the cut uses cost, and what every take rendered so far cost."
            )
        else:
            facts.append(("spent", "$0.00 <small>free preview</small>"))
            facts.append(("live, list price", _money(list_price)))
            note = (
                "<strong>Preview animatic</strong>, rendered offline for free: stand-in "
                "pictures with the real cut's timing. Nothing was spent; rendering every "
                f"take with the hosted models would cost {_money(list_price)} at list price."
            )
        dl = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
        kind = "live render" if live else "preview animatic"
        return (
            f'<header class="top"><p class="eyebrow">storyboard review · {kind}</p>'
            f"<h1>{escape(title)}</h1>"
            f'<p class="source">{escape(board.path.name)}</p>'
            f'<dl class="facts">{dl}</dl><p class="backend">{note}</p></header>'
        )

    def notice(self, cut: _Cut | None) -> str:
        plan = self.plan
        live = " --live" if plan.backend == "live" else ""
        name = escape(plan.board.path.name)
        if plan.missing:
            missing = ", ".join(escape(m) for m in plan.missing)
            return (
                f'<p class="notice" role="status">Not every shot is rendered, so there is no '
                f"cut yet. Not rendered: <strong>{missing}</strong>. "
                f"<code>storyboard render{live} {name}</code> renders them.</p>"
            )
        if cut is None:
            return (
                '<p class="notice" role="status">The cut on disk is not the current '
                f"storyboard's. <code>storyboard stitch{live} {name}</code> re-stitches it "
                "from the rendered clips (nothing is rendered, nothing is spent).</p>"
            )
        return ""

    def cut(self, cut: _Cut | None) -> str:
        tl = self.timeline
        if tl is None:
            return ""
        player = ""
        if cut is not None:
            player = (
                f'<video id="cut" class="player" controls preload="metadata" '
                f'src="{escape(cut.video)}" poster="{escape(cut.poster)}"></video>'
            )
        total = tl.frames
        items: list[str] = []
        seams: list[str] = []
        overlaps: list[str] = []
        incoming = 0
        for i, item in enumerate(tl.items):
            self.css.append(
                f".strip .i{i}{{left:{_pct(item.record_start, total)};"
                f"width:{_pct(item.frames, total)}}}"
                # the label starts after the seam coming in and ends before the one going out
                f".strip .i{i} .label{{left:calc({_pct(incoming, item.frames)} + 6px);"
                f"right:calc({_pct(item.transition_frames, item.frames)} + 6px)}}"
            )
            incoming = item.transition_frames
            start = item.record_start / tl.fps
            seconds = item.frames / tl.fps
            lane = "lane-b" if i % 2 else "lane-a"
            label = f"{item.shot} · {seconds:.1f} s from {start:.2f} s"
            attrs = (
                f'data-item="{i}" data-shot="{escape(item.shot)}" data-start="{start:.6f}" '
                f'data-record-start="{item.record_start}" data-frames="{item.frames}" '
                f'title="{escape(label)}" aria-label="{escape("seek to " + label)}"'
            )
            if item.kind == "card":
                cls = self.card_class(f"s{i}", item.card_background, item.card_color)
                text = escape(item.card_text or "")
                items.append(
                    f'<button type="button" class="item card {lane} i{i} {cls}" {attrs}>'
                    f'<span class="card-text">{text}</span></button>'
                )
            else:
                thumb = self.posters.get(item.shot)
                img = f'<img src="{escape(thumb)}" alt="">' if thumb else ""
                items.append(
                    f'<button type="button" class="item clip {lane} i{i}" {attrs}>{img}'
                    f'<span class="label">{escape(item.shot)}</span></button>'
                )
            if item.transition_frames:
                first = item.record_start + item.frames - item.transition_frames
                self.css.append(
                    f".strip .o{i}{{left:{_pct(first, total)};"
                    f"width:{_pct(item.transition_frames, total)}}}"
                    f".seams .m{i}{{left:{_pct(first + item.transition_frames / 2, total)}}}"
                )
                secs = item.transition_frames / tl.fps
                what = f"{item.transition} {secs:.2f} s ({item.transition_frames} frames)"
                overlaps.append(
                    f'<div class="overlap o{i}" data-transition="{escape(item.transition)}" '
                    f'data-frames="{item.transition_frames}" title="{escape(what)}"></div>'
                )
                seams.append(
                    f'<span class="seam m{i}" title="{escape(what)}">'
                    f"{escape(item.transition)}</span>"
                )
        ticks: list[str] = []
        step = _tick_step(tl.seconds)
        k = 0
        while k * step <= tl.seconds - step * 0.35 or k == 0:
            at = k * step
            self.css.append(f".ruler .t{k}{{left:{_pct(at, tl.seconds)}}}")
            first_cls = " first" if k == 0 else ""
            ticks.append(f'<span class="tick t{k}{first_cls}">{at:g} s</span>')
            k += 1
        hint = "click a shot on the strip to play the cut from there" if cut else ""
        return (
            f'<section class="cut" aria-label="the cut">{player}'
            f'<div class="strip-wrap"><div class="seams">{"".join(seams)}</div>'
            f'<div class="strip">{"".join(items)}{"".join(overlaps)}'
            f'<div class="playhead"></div></div>'
            f'<div class="ruler">{"".join(ticks)}</div>'
            f'<p class="hint">{hint}</p></div></section>'
        )

    # -- the shots ----------------------------------------------------------------------------

    def shot(self, s: _Shot) -> str:
        sp, item, tl = s.plan, s.item, self.timeline
        shot = sp.shot
        sid = escape(sp.id)
        head = [f'<span class="num">{s.number:02d}</span>']
        head.append(f'<h2><a href="#shot-{sid}">{sid}</a></h2>')
        meta: list[tuple[str, str]] = []
        text = ""
        media = ""
        if sp.kind == "card" and shot.card is not None:
            head.append('<span class="chip">title card</span>')
            cls = self.card_class(f"c{s.number}", shot.card.background, shot.card.color)
            media = f'<div class="takes">{_card_face(cls, shot.card.text)}</div>'
            meta.append(("length", _secs(shot.card.duration)))
            meta.append(("cost", "none: drawn locally"))
        else:
            head.append(f'<span class="chip model">{escape(shot.model or "")}</span>')
            prompt = sp.takes[0].material.prompt if sp.takes else shot.prompt
            text = f'<blockquote class="prompt">{escape(prompt)}</blockquote>'
            if shot.negative_prompt:
                text += f'<p class="negative">not: {escape(shot.negative_prompt)}</p>'
            if shot.duration is not None:
                meta.append(("asked", _secs(shot.duration)))
            if sp.seconds:
                meta.append(("new footage", _secs(sp.seconds)))
            if shot.extends:
                meta.append(
                    (
                        "extends",
                        f'<a href="#shot-{escape(shot.extends)}">{escape(shot.extends)}</a>',
                    )
                )
            if shot.continues:
                meta.append(
                    (
                        "continues",
                        f'<a href="#shot-{escape(shot.continues)}">{escape(shot.continues)}</a>',
                    )
                )
            many = len(sp.takes) > 1
            meta.append(
                ("takes", f"{len(sp.takes)}, the cut uses take {shot.select}" if many else "1")
            )
            spent = "nothing (free preview)" if self.plan.backend == "preview" else _money(s.spent)
            meta.append(("spent", spent))
            takes = f"{len(sp.takes)} takes" if many else "1 take"
            meta.append(("list price", f"{_money(sp.live_cost)} for {takes}"))
            media = '<div class="takes">' + "".join(self.take(sp.id, t) for t in s.takes) + "</div>"
        head.append(f'<span class="chip {escape(sp.status)}">{escape(sp.status)}</span>')
        if item is not None and tl is not None:
            start = item.record_start / tl.fps
            where = f"{_secs(item.frames / tl.fps)} at {start:.2f} s"
            if item.kind == "clip" and item.source_start:
                where += f", from {item.source_start:.2f} s of the clip"
            meta.insert(0, ("in the cut", where))
            if item.transition_frames:
                out = f"{item.transition} {item.transition_frames / tl.fps:.2f} s"
            else:
                out = "cut"
            meta.append(("into the next", escape(out)))
        dl = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in meta)
        reason = f'<p class="reason {escape(sp.status)}">{escape(sp.reason)}</p>'
        return (
            f'<article class="shot {escape(sp.kind)}" id="shot-{sid}" data-shot="{sid}">'
            f'<div class="shot-info"><div class="shot-head">{"".join(head)}</div>'
            f'{reason}{text}<dl class="meta">{dl}</dl></div>'
            f'<div class="shot-media">{media}</div></article>'
        )

    def take(self, shot: str, t: _Take) -> str:
        cls = "take selected" if t.selected else "take"
        if t.video is None:
            cls += " missing"
            picture = '<div class="placeholder">not rendered</div>'
        else:
            picture = (
                f'<video controls preload="metadata" src="{escape(t.video)}" '
                f'poster="{escape(t.poster or "")}"></video>'
            )
        line = [f'<span class="take-name">take {t.number}</span>']
        if t.selected:
            line.append('<span class="badge">selected</span>')
        facts = []
        if t.seconds is not None:
            facts.append(f"{t.seconds:.2f} s")
        if t.seed is not None:
            facts.append(f"seed {t.seed}")
        if t.video is not None and self.plan.backend == "live":
            facts.append(_money(t.cost))
        if t.video is None:
            facts.append("not rendered")
        line.append(f'<span class="take-facts">{escape(" · ".join(facts))}</span>')
        checks = ""
        if t.video is not None and t.findings is not None:
            if t.findings:
                found = "".join(
                    f'<li class="finding {escape(kind)}">{escape(text)}</li>'
                    for kind, text in t.findings
                )
                checks = f'<ul class="checks">{found}</ul>'
            else:
                checks = '<ul class="checks ok"><li>checks: nothing found</li></ul>'
        button = ""
        needs = self.blocked.get((shot, t.number))
        if self.selectable and t.video is not None and not t.selected and needs:
            # The cut cannot use this take without a render: said before anyone clicks.
            button = (
                f'<button type="button" class="select blocked" disabled>select take {t.number}'
                f'</button><p class="needs">needs a render first: {escape(", ".join(needs))}'
                " build on this shot</p>"
            )
        elif self.selectable and t.video is not None and not t.selected:
            button = (
                f'<button type="button" class="select" data-shot="{escape(shot)}" '
                f'data-take="{t.number}">select take {t.number}</button>'
                '<p class="error" role="alert" hidden></p>'
            )
        return (
            f'<figure class="{cls}" data-take="{t.number}">{picture}'
            f'<figcaption><div class="take-line">{"".join(line)}</div>{checks}{button}'
            "</figcaption></figure>"
        )

    # -- the whole page -------------------------------------------------------------------

    def page(self, shots: list[_Shot], cut: _Cut | None) -> str:
        from storyboard import __version__

        plan, tl = self.plan, self.timeline
        for s in shots:
            sel = next((t for t in s.takes if t.selected), None)
            if sel is not None and sel.poster is not None:
                self.posters[s.plan.id] = sel.poster
        width, height = (tl.width, tl.height) if tl is not None else _frame(plan)
        self.css.append(f":root{{--aspect:{width} / {height}}}")
        top = self.header(shots) + self.notice(cut) + self.cut(cut)
        listed = "".join(self.shot(s) for s in shots)
        skipped = [sp.id for sp in plan.shots if sp.kind == "skipped"]
        if skipped:
            listed += (
                '<p class="skipped">Skipped (left out of the render and the cut): '
                f"{escape(', '.join(skipped))}</p>"
            )
        data = _script_data(tl, self.selectable)
        style = _asset("review.css") + "\n" + "\n".join(self.css) + "\n"
        script = _asset("review.js")
        connect = "'self'" if self.selectable else "'none'"
        csp = (
            "default-src 'none'; img-src 'self'; media-src 'self'; "
            f"style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; "
            f"connect-src {connect}; base-uri 'none'; form-action 'none'"
        )
        title = escape(plan.board.title or plan.board.path.stem)
        return (
            '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="generator" content="{GENERATOR}">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
            '<meta name="referrer" content="no-referrer">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<link rel="icon" href="{ICON}" type="image/svg+xml">\n'
            f"<title>{title} · review</title>\n<style>{style}</style>\n</head>\n<body>\n"
            f'<div class="page">{top}<h2 class="shots-title">Shots in cut order</h2>'
            f"<main>{listed}</main>"
            f"<footer>written by storyboard {escape(__version__)} · "
            f"{escape(plan.board.path.name)}</footer></div>\n"
            f'<script type="application/json" id="review-data">{script_json(data)}</script>\n'
            f"<script>{script}</script>\n</body>\n</html>\n"
        )


def _blocked(plan: Plan, store: Store) -> dict[tuple[str, int], tuple[str, ...]]:
    """The rendered, unselected takes the cut cannot use without a render, with the shots
    of the cut they would leave without a clip (those built on the shot)."""
    from storyboard.selecting import missing_after

    blocked: dict[tuple[str, int], tuple[str, ...]] = {}
    for sp in plan.shots:
        if (
            sp.kind != "model"
            or len(sp.takes) < 2
            or not any(o.shot.upstream == sp.id for o in plan.shots)
        ):
            continue
        for t in sp.takes:
            if t.clip is not None and t.take != sp.shot.select:
                needs = tuple(
                    m for m in missing_after(plan, store, sp.id, t.take) if m not in plan.missing
                )
                if needs:
                    blocked[sp.id, t.take] = needs
    return blocked


def _script_data(tl: Timeline | None, selectable: bool) -> dict[str, Any]:
    """What the page's script reads: the strip's items in seconds of the cut."""
    if tl is None:
        return {"selectable": selectable, "fps": None, "frames": 0, "seconds": 0, "items": []}
    items = [
        {
            "shot": i.shot,
            "kind": i.kind,
            "start": i.record_start / tl.fps,
            "seconds": i.frames / tl.fps,
            "transition": i.transition,
            "transition_seconds": i.transition_frames / tl.fps,
        }
        for i in tl.items
    ]
    return {
        "selectable": selectable,
        "fps": tl.fps,
        "frames": tl.frames,
        "seconds": tl.seconds,
        "items": items,
    }


def _frame(plan: Plan) -> tuple[int, int]:
    from storyboard.catalog import frame_size

    out = plan.board.output
    return frame_size(out.resolution, out.aspect_ratio)


def _write_if_changed(path: Path, data: bytes) -> None:
    if not (path.is_file() and path.read_bytes() == data):
        atomic_write(path, data)


def write_review(
    plan: Plan,
    store: Store,
    out_dir: Path,
    *,
    checks: Mapping[tuple[str, int], TakeCheck] | None = None,
    selectable: bool = False,
) -> ReviewPage:
    """Write the review folder of ``plan``: ``out_dir/index.html`` and ``out_dir/media/``.

    Every shot is listed in cut order with every take (``checks``: each take's automatic
    checks, shown beside it); the cut is shown on top with a strip of its shots when every
    shot is rendered and the stitched cut is the current storyboard's. A storyboard with
    shots not rendered still gets a page, which says which. ``selectable`` adds the
    "select take N" buttons of ``storyboard review --serve``.

    Raises:
        ReviewFolderError: ``out_dir`` cannot be written, or holds another program's page.
        ClipGone: a clip vanished from the store while the page was written.
        StitchError: a clip of the cut cannot be read.
        MediaError: ffmpeg could not draw a poster.
    """
    from storyboard.timeline import timeline_of

    media = _prepare(out_dir)
    timeline = timeline_of(plan, store) if not plan.missing else None
    shots = _shots(plan, timeline, media, checks)
    cut = _cut(plan, timeline, media) if timeline is not None else None
    html = _Writer(plan, timeline, selectable, _blocked(plan, store) if selectable else None).page(
        shots, cut
    )
    index = media.folder.parent / "index.html"
    try:
        _write_if_changed(index.with_name(ICON), _asset(ICON).encode("utf-8"))
        _write_if_changed(index, html.encode("utf-8"))
    except OSError as exc:
        raise ReviewFolderError(index.parent, exc.strerror or str(exc)) from exc
    media.prune()
    return ReviewPage(
        index=index,
        folder=index.parent,
        shots=len(shots),
        takes=sum(1 for s in shots for t in s.takes if t.video is not None),
        media_bytes=sum(media.used.values()),
    )
