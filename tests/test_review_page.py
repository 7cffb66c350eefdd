"""The review page (issue 11 item 1): a self-contained folder, escaped, incremental, exact.

The page is read back with :mod:`html.parser`, as a browser's first pass would; what it does
in a real browser is tests/test_review_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, run_cli
from review_fixtures import BOARD, HOSTILE, plan_of, render_board

from storyboard.cache import Store
from storyboard.media import ffmpeg
from storyboard.media.probe import probe
from storyboard.plan import Plan
from storyboard.review import ReviewPage, write_review
from storyboard.review.page import ReviewFolderError, script_json
from storyboard.takecheck import Finding, TakeCheck
from storyboard.timeline import timeline_of

# -- reading a page back --------------------------------------------------------------------


class Element:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Element | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Element] = []
        self.parts: list[str | Element] = []  # text and children, in document order

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def all_text(self) -> str:
        return "".join(p if isinstance(p, str) else p.all_text() for p in self.parts)

    def find(self, tag: str | None = None, cls: str | None = None) -> list[Element]:
        found = []
        for child in self.children:
            if (tag is None or child.tag == tag) and (cls is None or cls in child.classes):
                found.append(child)
            found.extend(child.find(tag, cls))
        return found


class Page(HTMLParser):
    """The element tree of a page (void elements closed as they open)."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input", "source", "wbr"})

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {}, None)
        self.here = self.root
        self.raw = text
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, self.here)
        self.here.children.append(element)
        self.here.parts.append(element)
        if tag not in self.VOID:
            self.here = element

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.here
        while node is not None and node.tag != tag:
            node = node.parent
        assert node is not None and node.parent is not None, f"</{tag}> closes nothing"
        self.here = node.parent

    def handle_data(self, data: str) -> None:
        self.here.parts.append(data)

    def find(self, tag: str | None = None, cls: str | None = None) -> list[Element]:
        return self.root.find(tag, cls)

    def one(self, tag: str | None = None, cls: str | None = None) -> Element:
        found = self.find(tag, cls)
        assert len(found) == 1, (tag, cls, len(found))
        return found[0]

    @property
    def style(self) -> str:
        return self.one("style").all_text()

    def css_rule(self, selector: str) -> dict[str, str]:
        match = re.search(re.escape(selector) + r"\{([^}]*)\}", self.style)
        assert match, f"no CSS rule for {selector}"
        return dict(part.split(":", 1) for part in match.group(1).split(";") if part)

    def data(self) -> Any:
        block = next(s for s in self.find("script") if s.attrs.get("id") == "review-data")
        return json.loads(block.all_text())

    def article(self, shot: str) -> Element:
        return next(a for a in self.find("article") if a.attrs["data-shot"] == shot)


def read(page: ReviewPage) -> Page:
    return Page(page.index.read_text(encoding="utf-8"))


def assert_self_contained(page: ReviewPage) -> None:
    """Every resource is a relative path to a file inside the folder; nothing on a network."""
    parsed = read(page)
    lowered = parsed.raw.lower()
    for needle in ("http:", "https:", "//"):
        assert needle not in lowered, f"{needle!r} in the page"
    folder = page.folder.resolve()
    for element in parsed.find():
        for name in ("src", "poster", "href"):
            value = element.attrs.get(name)
            if value is None:
                continue
            if name == "href" and value.startswith("#"):
                continue  # a link inside the page
            assert value and not value.startswith("/") and ":" not in value, value
            target = (folder / value).resolve()
            assert target.is_relative_to(folder), value
            assert target.is_file() and not target.is_symlink(), value


# -- without a render: fast ------------------------------------------------------------------

UNRENDERED = f"""\
storyboard: 1
title: "{HOSTILE}"
defaults:
  model: skyreels-v4-fast
  resolution: 480p
  duration: 3
shots:
  - id: open
    card: {{text: "{HOSTILE}", duration: 1.0, background: "#203040", color: "tomato"}}
  - id: sea
    model: skyreels-v1
    first_frame: refs/a.png
    prompt: 'dusk {HOSTILE}'
    negative_prompt: 'no {HOSTILE}'
    takes: 2
  - id: gone
    prompt: left out
    skip: true
"""


def _unrendered(project: Project) -> tuple[Plan, Store]:
    project.write(UNRENDERED)
    return plan_of(project.file)


def test_a_storyboard_with_nothing_rendered_still_gets_a_page(project: Project) -> None:
    plan, store = _unrendered(project)
    page = write_review(plan, store, project.root / "out")
    assert page == ReviewPage(
        index=project.root / "out" / "index.html",
        folder=project.root / "out",
        shots=2,  # the card and the model shot; the skipped shot is only named
        takes=0,
        media_bytes=0,
    )
    parsed = read(page)
    assert not parsed.find("video")  # no cut, no take to play
    notice = parsed.one(cls="notice").all_text()
    assert "Not rendered: sea" in notice and "storyboard render storyboard.yaml" in notice
    figures = parsed.find("figure", "take")
    assert [f.attrs["data-take"] for f in figures] == ["1", "2"]
    assert all("not rendered" in f.all_text() for f in figures)
    assert "selected" in figures[0].classes and "selected" not in figures[1].classes
    assert [a.attrs["id"] for a in parsed.find("article")] == ["shot-open", "shot-sea"]
    assert "gone" in parsed.one(cls="skipped").all_text()
    assert not parsed.find("button")  # the static page has no select buttons
    assert_self_contained(page)
    assert not list((page.folder / "media").iterdir())


def test_live_and_preview_are_said_plainly(project: Project) -> None:
    project.write(UNRENDERED)
    from storyboard.pipeline import plan_build

    preview = read(write_review(*plan_of(project.file), project.root / "preview"))
    top = preview.one("header").all_text()
    assert "preview animatic" in top and "free preview" in top and "Nothing was spent" in top
    live_plan = plan_build(project.file, live=True)
    live = read(
        write_review(live_plan, Store.for_storyboard(live_plan.board.path), project.root / "live")
    )
    top = live.one("header").all_text()
    assert "live render" in top and "free" not in top
    assert "all rendered takes$0.00" in top  # nothing rendered live yet: nothing spent
    assert "storyboard render --live storyboard.yaml" in live.one(cls="notice").all_text()
    sea = live.article("sea").find("dl", "meta")[0].all_text()
    assert f"list price${live_plan.shot('sea').live_cost:.2f} for 2 takes" in sea


def test_what_the_author_wrote_is_escaped(project: Project) -> None:
    plan, store = _unrendered(project)
    # Ids are slugs by the schema; the page escapes them all the same.
    sea = plan.shot("sea")
    plan = replace(
        plan, shots=tuple(replace(sp, shot=replace(sp.shot, id=HOSTILE)) if sp is sea else sp
                          for sp in plan.shots)
    )  # fmt: skip
    page = write_review(plan, store, project.root / "out", selectable=True)
    parsed = read(page)
    assert HOSTILE not in parsed.raw
    assert "<b>" not in parsed.raw
    # No element came out of the author's text: one image-less page, two script elements
    # (the JSON data and the page's own script), nothing with an event handler.
    assert not parsed.find("img")
    assert len(parsed.find("script")) == 2
    assert not [e for e in parsed.find() if any(a.startswith("on") for a in e.attrs)]
    # The text is all there, as text.
    assert parsed.one("h1").all_text() == HOSTILE
    assert parsed.one("title").all_text() == f"{HOSTILE} · review"
    assert parsed.one(cls="prompt").all_text() == f"dusk {HOSTILE}"
    assert parsed.one(cls="negative").all_text() == f"not: no {HOSTILE}"
    assert parsed.one(cls="card-face").all_text() == HOSTILE
    article = parsed.find("article")[1]
    assert article.attrs["id"] == f"shot-{HOSTILE}"
    assert article.find("h2")[0].all_text() == HOSTILE


def test_script_data_cannot_end_its_script_element() -> None:
    value = {"text": "</script><!-- & \u2028\u2029 >", "n": [1, 2.5, None]}
    text = script_json(value)
    for raw in ("<", ">", "&", "\u2028", "\u2029"):
        assert raw not in text
    assert json.loads(text) == value


def test_card_colours_are_css_colours_or_nothing(project: Project) -> None:
    plan, store = _unrendered(project)
    parsed = read(write_review(plan, store, project.root / "out"))
    face = parsed.one(cls="card-face")
    cls = next(c for c in face.classes if c.startswith("paint-"))
    # "tomato" is a CSS name; the page writes every colour as #rrggbb.
    assert parsed.css_rule(f".{cls}") == {"background": "#203040", "color": "#ff6347"}


def test_the_content_security_policy_names_the_inline_style_and_script(
    project: Project,
) -> None:
    plan, store = _unrendered(project)
    for selectable in (False, True):
        parsed = read(write_review(plan, store, project.root / "out", selectable=selectable))
        meta = next(
            m for m in parsed.find("meta") if m.attrs.get("http-equiv") == "Content-Security-Policy"
        )
        policy = dict(part.strip().partition(" ")[::2] for part in meta.attrs["content"].split(";"))

        def digest(text: str) -> str:
            return (
                "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
            )

        assert policy["default-src"] == "'none'"
        assert policy["style-src"] == digest(parsed.style)
        script = next(s for s in parsed.find("script") if "id" not in s.attrs).all_text()
        assert policy["script-src"] == digest(script)
        assert policy["img-src"] == policy["media-src"] == "'self'"
        # Only the serving page talks to its server.
        assert policy["connect-src"] == ("'self'" if selectable else "'none'")


def test_a_folder_that_is_not_a_review_is_left_alone(project: Project) -> None:
    plan, store = _unrendered(project)
    theirs = project.root / "site"
    theirs.mkdir()
    (theirs / "index.html").write_text("<html>my own page</html>", encoding="utf-8")
    with pytest.raises(ReviewFolderError) as caught:
        write_review(plan, store, theirs)
    assert "not written by storyboard review" in str(caught.value)
    assert caught.value.hint() is not None
    assert (theirs / "index.html").read_text(encoding="utf-8") == "<html>my own page</html>"
    assert not (theirs / "media").exists()
    a_file = project.root / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    with pytest.raises(ReviewFolderError, match="is a file"):
        write_review(plan, store, a_file)
    # Our own page is rewritten without a fuss.
    page = write_review(plan, store, project.root / "ours")
    assert write_review(plan, store, project.root / "ours") == page


# -- rendered: slow ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_board(tmp_path_factory.mktemp("review") / "proj")


CHECKS = {
    ("sea", 1): TakeCheck("d1", ()),
    ("sea", 2): TakeCheck("d2", (Finding("frozen", 1.0, 2.1, "frozen 2.1 s at 1.0 s"),)),
}


@pytest.mark.slow
def test_the_folder_is_self_contained(board: Path, tmp_path: Path) -> None:
    plan, store = plan_of(board)
    page = write_review(plan, store, tmp_path / "review")
    assert (page.shots, page.takes) == (3, 3)
    assert_self_contained(page)
    parsed = read(page)
    cut = parsed.one("video", "player")
    # The copies are byte for byte the cut and the stored clips.
    assert (page.folder / cut.attrs["src"]).read_bytes() == plan.cut.read_bytes()
    clips = {tp.clip.digest: tp.clip.path for sp in plan.shots for tp in sp.takes if tp.clip}
    takes = [v for v in parsed.find("video") if v is not cut]
    assert len(takes) == 3
    for video in takes:
        copy = page.folder / video.attrs["src"]
        assert video.attrs["preload"] == "metadata" and "controls" in video.attrs
        source = next(p for d, p in clips.items() if copy.name == f"{d[:20]}.mp4")
        assert copy.read_bytes() == source.read_bytes()
        assert (page.folder / video.attrs["poster"]).stat().st_size > 0
    used = {
        page.folder / e.attrs[a] for e in parsed.find() for a in ("src", "poster") if a in e.attrs
    }
    media = set((page.folder / "media").iterdir())
    assert media == used  # nothing more in media/ than the page shows
    assert page.media_bytes == sum(p.stat().st_size for p in media)
    # Posters are real pictures of the clip's size (scaled down), JPEG.
    from PIL import Image

    with Image.open(page.folder / cut.attrs["poster"]) as poster:
        assert poster.format == "JPEG" and poster.size == (640, 360)
        seen = poster.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    # ... and not the first frame (the title card here; often black after a fade): the
    # middle of the longest shot.
    first = tmp_path / "first.png"
    ffmpeg.run(
        ["-i", str(plan.cut), "-frames:v", "1", "-f", "image2", "-update", "1", str(first)],
        what="first frame",
        timeout=60,
    )
    with Image.open(first) as frame:
        opening = frame.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert isinstance(seen, tuple) and isinstance(opening, tuple)
    assert sum(abs(a - b) for a, b in zip(seen, opening, strict=True)) > 30, (seen, opening)


@pytest.mark.slow
def test_a_rerun_copies_nothing_and_removes_what_the_page_no_longer_shows(
    board: Path, tmp_path: Path
) -> None:
    project = tmp_path / "proj"
    shutil.copytree(board.parent, project)  # the store comes along: nothing renders again
    path = project / "storyboard.yaml"
    from storyboard.pipeline import restitch

    restitch(path)  # the cut records are per storyboard path
    plan, store = plan_of(path)
    folder = tmp_path / "review"
    first = read(write_review(plan, store, folder))
    assert first.find("video", "player")
    media = folder / "media"

    def state() -> dict[str, tuple[int, int]]:
        return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in media.iterdir()}

    before = state()
    index_mtime = (folder / "index.html").stat().st_mtime_ns
    stale = media / ("0" * 20 + ".mp4")
    stale.write_bytes(b"old cut")
    (media / ".0123.mp4.99.tmp").write_bytes(b"half a copy")
    (media / "notes.txt").write_text("the reviewer's own file", encoding="utf-8")
    write_review(plan, store, folder)
    after = state()
    assert after == before | {"notes.txt": after["notes.txt"]}  # not one byte copied again
    assert (folder / "index.html").stat().st_mtime_ns == index_mtime  # same page, not rewritten
    # Select take 2 and re-stitch: the new cut and its poster are added, the old ones go,
    # the takes stay where they are.
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("select: 1\n", "select: 2\n"), encoding="utf-8")
    restitch(path)
    plan, store = plan_of(path)
    write_review(plan, store, folder)
    again = state()
    gone = set(before) - set(again)
    added = set(again) - set(before) - {"notes.txt"}
    assert len(gone) == 2 and {Path(n).suffix for n in gone} == {".mp4", ".jpg"}
    assert len(added) == 2 and {Path(n).suffix for n in added} == {".mp4", ".jpg"}
    for name in set(before) & set(again):
        assert again[name] == before[name]
    parsed = read(ReviewPage(folder / "index.html", folder, 0, 0, 0))
    assert (
        parsed.one("video", "player").attrs["src"]
        == f"media/{next(n for n in added if n.endswith('.mp4'))}"
    )
    selected = parsed.article("sea").find("figure", "selected")
    assert [f.attrs["data-take"] for f in selected] == ["2"]


@pytest.mark.slow
def test_the_strip_matches_the_timeline(board: Path, tmp_path: Path) -> None:
    plan, store = plan_of(board)
    timeline = timeline_of(plan, store)
    parsed = read(write_review(plan, store, tmp_path / "review"))
    items = parsed.find("button", "item")
    data = parsed.data()
    assert [i.attrs["data-shot"] for i in items] == [i.shot for i in timeline.items]
    assert [d["shot"] for d in data["items"]] == [i.shot for i in timeline.items]
    assert data["fps"] == timeline.fps and data["frames"] == timeline.frames
    for n, (element, item, entry) in enumerate(
        zip(items, timeline.items, data["items"], strict=True)
    ):
        start = item.record_start / timeline.fps
        assert float(element.attrs["data-start"]) == pytest.approx(start, abs=1e-6)
        assert entry["start"] == pytest.approx(start, abs=1e-9)
        assert entry["seconds"] == pytest.approx(item.frames / timeline.fps, abs=1e-9)
        assert int(element.attrs["data-frames"]) == item.frames
        rule = parsed.css_rule(f".strip .i{n}")
        assert float(rule["left"].rstrip("%")) == pytest.approx(
            100 * item.record_start / timeline.frames, abs=1e-3
        )
        assert float(rule["width"].rstrip("%")) == pytest.approx(
            100 * item.frames / timeline.frames, abs=1e-3
        )
    # The card is drawn as itself; the clips show their selected take's poster.
    card = items[0]
    assert "card" in card.classes and card.all_text() == HOSTILE
    colours = next(c for c in card.classes if c.startswith("paint-"))
    assert parsed.css_rule(f".{colours}") == {"background": "#203040", "color": "#ffeecc"}
    assert all(len(i.find("img")) == 1 for i in items[1:])
    # Seams: a crossfade after the card, a wipe after sea, none after the last shot.
    overlaps = parsed.find("div", "overlap")
    assert (
        [(o.attrs["data-transition"], int(o.attrs["data-frames"])) for o in overlaps]
        == [(i.transition, i.transition_frames) for i in timeline.items if i.transition_frames]
        == [("crossfade", 12), ("wipe-left", 12)]
    )
    assert [s.all_text() for s in parsed.find("span", "seam")] == ["crossfade", "wipe-left"]
    first = timeline.items[0]
    rule = parsed.css_rule(".strip .o0")
    assert float(rule["left"].rstrip("%")) == pytest.approx(
        100 * (first.record_start + first.frames - first.transition_frames) / timeline.frames,
        abs=1e-3,
    )
    # The header's length is the cut's.
    assert f"{timeline.frames} frames at {timeline.fps} fps" in parsed.one(cls="facts").all_text()
    assert probe(plan.cut).duration == pytest.approx(timeline.seconds, abs=1.5 / timeline.fps)


@pytest.mark.slow
def test_takes_their_selection_checks_and_buttons(board: Path, tmp_path: Path) -> None:
    plan, store = plan_of(board)
    static = read(write_review(plan, store, tmp_path / "static", checks=CHECKS))
    served = read(write_review(plan, store, tmp_path / "served", checks=CHECKS, selectable=True))
    for parsed, selectable in ((static, False), (served, True)):
        sea = parsed.article("sea")
        figures = sea.find("figure", "take")
        assert [f.attrs["data-take"] for f in figures] == ["1", "2"]
        assert ["selected" in f.classes for f in figures] == [True, False]
        assert figures[0].find(cls="badge")[0].all_text() == "selected"
        assert figures[0].find("ul", "checks")[0].all_text() == "checks: nothing found"
        assert figures[1].find("ul", "checks")[0].all_text() == "frozen 2.1 s at 1.0 s"
        kite = parsed.article("kite")
        assert not kite.find("ul", "checks")  # not checked: nothing said
        buttons = parsed.find("button", "select")
        if not selectable:
            assert not buttons
            continue
        # Only a rendered take that is not the selected one can be selected.
        assert [(b.attrs["data-shot"], b.attrs["data-take"], b.all_text()) for b in buttons] == [
            ("sea", "2", "select take 2")
        ]
        assert parsed.data()["selectable"] is True


@pytest.mark.slow
def test_the_review_command_writes_the_page_beside_the_cut(board: Path, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    shutil.copytree(board.parent, project)
    result = run_cli("review", str(project / "storyboard.yaml"))
    assert result.code == 0, result.err
    index = project / "renders" / "storyboard.preview.review" / "index.html"
    assert index.is_file()
    parsed = Page(index.read_text(encoding="utf-8"))
    assert len(parsed.find("video")) == 4
    assert BOARD.count("id:") == len(parsed.find("article"))
