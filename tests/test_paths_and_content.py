"""Nothing written outside the storyboard's tree; inputs are what they claim (issue 8, 3-4).

Real files and real links in ``tmp_path``; the CLI in-process and, for the end-to-end render,
as a subprocess; the provider emulator on 127.0.0.1 for the live run. The bad inputs that
can be committed are fixtures under ``tests/fixtures/invalid/`` (``content_*``,
``output_path_*``, media in ``invalid/bad-media/``); links are made here at run time.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest
from conftest import ROOT, run_cli, write_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storyboard.errors import InvalidStoryboard, Problem
from storyboard.hashing import DigestMemo, sha256_file
from storyboard.lockfile import lock_path
from storyboard.mediainfo import MediaMemo, WrongContent, check_content, sniff
from storyboard.paths import VIDEO_CONTAINERS, UnsafePath, preview_path, safe_output_path
from storyboard.validate import load_storyboard

FIXTURES = Path(__file__).parent / "fixtures"
REFS = FIXTURES / "invalid" / "refs"
BAD = FIXTURES / "invalid" / "bad-media"

# The top-level boxes an MP4/MOV may open with.
ISO_FIRST = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}

PROPERTY = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def problems_of(file: Path) -> tuple[Problem, ...]:
    try:
        load_storyboard(file)
    except InvalidStoryboard as exc:
        return exc.problems
    return ()


def places(problems: tuple[Problem, ...]) -> set[tuple[int, int, str]]:
    return {(p.line, p.col, p.path) for p in problems}


def board(root: Path, output: str | None = None, *, card_only: bool = False) -> Path:
    """A small storyboard in ``root``; ``output`` is its output.path (on line 4)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["storyboard: 1", "output:", "  resolution: 480p"]
    if output is not None:
        lines.append(f"  path: {json.dumps(output)}")
    lines.append("shots:")
    if card_only:
        lines += ["  - id: title", "    card: {text: Hello, duration: 1.0}"]
    else:
        write_image(root / "refs" / "a.png", (200, 60, 40))
        lines += [
            "  - id: fox",
            "    model: skyreels-v1",
            "    prompt: a red fox",
            "    first_frame: refs/a.png",
        ]
    file = root / "storyboard.yaml"
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return file


def victim(path: Path) -> tuple[bytes, int]:
    """A file outside the tree that nothing may touch: its bytes and mtime."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"precious: not a video\n")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    return path.read_bytes(), path.stat().st_mtime_ns


# == 1. nothing written outside the tree ===================================================

# -- the rule, on its own ------------------------------------------------------------------


def test_paths_inside_the_tree_are_accepted(tmp_path: Path) -> None:
    root = tmp_path / "b"
    (root / "cuts").mkdir(parents=True)
    (root / "renders").symlink_to(root / "cuts", target_is_directory=True)  # a link inside
    assert safe_output_path(root, "renders/x.mp4") == root / "renders" / "x.mp4"
    assert safe_output_path(root, "a/../b/x.MOV", suffixes=VIDEO_CONTAINERS) == root / "b/x.MOV"
    assert safe_output_path(root, root / "c" / "x.mp4") == root / "c" / "x.mp4"


segments = st.lists(st.sampled_from(["..", ".", "a", "renders", "a/b", "../a"]), max_size=6)


@PROPERTY
@given(parts=segments, name=st.sampled_from(["x.mp4", "cut.mov", "../y.mp4"]))
def test_a_path_is_refused_exactly_when_it_leaves_the_tree(
    tmp_path: Path, parts: list[str], name: str
) -> None:
    """Whatever mix of ``..`` and folders: accepted paths are inside, refused ones are not."""
    root = tmp_path / "tree" / "board"
    relative = "/".join([*parts, name])
    inside = Path(os.path.normpath(root / relative)).is_relative_to(root)
    try:
        written = safe_output_path(root, relative, suffixes=VIDEO_CONTAINERS)
    except UnsafePath as exc:
        assert not inside
        assert exc.reason == "outside"
        assert relative in str(exc)
    else:
        assert inside
        assert written.is_relative_to(root)


@pytest.mark.parametrize(
    ("path", "suggested"),
    [("../victim.txt", "renders/victim.mp4"), ("../cut.mov", "renders/cut.mov"), ("..", "cut.mp4")],
)
def test_the_hint_for_an_escaping_cut_suggests_a_video_inside(
    tmp_path: Path, path: str, suggested: str
) -> None:
    with pytest.raises(UnsafePath) as caught:
        safe_output_path(tmp_path / "board", path, suffixes=VIDEO_CONTAINERS)
    assert suggested in (caught.value.hint() or "")


def test_links_that_lead_out_are_refused_wherever_they_are(tmp_path: Path) -> None:
    root = tmp_path / "board"
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "sub").mkdir(parents=True)
    (root / "renders").symlink_to(outside, target_is_directory=True)  # a folder on the way
    (root / "sub" / "deep").symlink_to(outside, target_is_directory=True)
    (root / "cut.mp4").symlink_to(outside / "victim.mp4")  # the file itself, dangling
    (outside / "there.mp4").write_bytes(b"x")
    (root / "there.mp4").symlink_to(outside / "there.mp4")  # the file itself, existing
    (root / "hop").symlink_to(root / "renders")  # a link inside, to a link out
    for path, link in [
        ("renders/x.mp4", "renders"),
        ("sub/deep/more/x.mp4", "sub/deep"),
        ("cut.mp4", "cut.mp4"),
        ("there.mp4", "there.mp4"),
        ("hop/x.mp4", "hop"),
    ]:
        with pytest.raises(UnsafePath) as info:
            safe_output_path(root, path)
        assert info.value.reason == "link", path
        assert info.value.link == root / link
        assert f"through the link {link!r}" in str(info.value)
        assert info.value.hint()
        assert info.value.exit_code == 2


def test_a_folder_and_a_wrong_suffix_are_refused(tmp_path: Path) -> None:
    (tmp_path / "renders").mkdir()
    with pytest.raises(UnsafePath) as info:
        safe_output_path(tmp_path, "renders")
    assert info.value.reason == "folder"
    for name in ("cut.txt", "cut", "renders/.mp4", "cut.mp4.yaml"):
        with pytest.raises(UnsafePath) as info:
            safe_output_path(tmp_path, name, suffixes=VIDEO_CONTAINERS)
        assert info.value.reason == "suffix", name
        assert ".mp4 or .mov" in str(info.value)
    assert preview_path(Path("r/cut.mov")) == Path("r/cut.preview.mov")


# -- validate ------------------------------------------------------------------------------


def test_output_folder_linked_out_is_reported_at_output_path(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    file = board(tmp_path / "b", "renders/cut.mp4")
    (tmp_path / "b" / "renders").symlink_to(outside, target_is_directory=True)
    problems = problems_of(file)
    assert places(problems) == {(4, 9, "$.output.path")}
    assert "leads outside the storyboard's folder through the link 'renders'" in str(problems[0])
    assert "-o PATH" in (problems[0].hint or "")


def test_default_output_folder_linked_out_is_reported(tmp_path: Path) -> None:
    """No output.path: the default renders/<stem>.mp4 obeys the same rule."""
    outside = tmp_path / "outside"
    outside.mkdir()
    file = board(tmp_path / "b")
    (tmp_path / "b" / "renders").symlink_to(outside, target_is_directory=True)
    problems = problems_of(file)
    assert [p.path for p in problems] == ["$.output.path"]
    assert (problems[0].line, problems[0].col) == (3, 3)  # the output mapping lacking it
    assert "'renders/storyboard.mp4'" in problems[0].message


def test_preview_cut_linked_out_is_reported(tmp_path: Path) -> None:
    """The live cut's name is fine, but the preview cut beside it is a link out."""
    file = board(tmp_path / "b", "renders/cut.mp4")
    (tmp_path / "b" / "renders").mkdir()
    (tmp_path / "b" / "renders" / "cut.preview.mp4").symlink_to(tmp_path / "victim.txt")
    problems = problems_of(file)
    assert places(problems) == {(4, 9, "$.output.path")}
    assert "preview cut path 'renders/cut.preview.mp4'" in problems[0].message


def test_lock_and_store_linked_out_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "b"
    file = board(root, "renders/cut.mp4")
    (root / "storyboard.lock").symlink_to(outside / "bashrc")
    (root / ".storyboard").symlink_to(outside, target_is_directory=True)
    problems = problems_of(file)
    assert [p.path for p in problems] == ["$", "$"]
    messages = " | ".join(p.message for p in problems)
    assert "the lock path 'storyboard.lock' leads outside" in messages
    assert "the store folder path '.storyboard' leads outside" in messages
    assert any("STORYBOARD_CACHE" in (p.hint or "") for p in problems)
    with pytest.raises(UnsafePath):
        lock_path(file)  # what read_lock and write_lock use
    # A store the user chose with STORYBOARD_CACHE may be anywhere.
    monkeypatch.setenv("STORYBOARD_CACHE", str(outside))
    assert [p.message for p in problems_of(file)] == [
        m for m in messages.split(" | ") if "lock" in m
    ]
    assert not (outside / "bashrc").exists()


def test_links_inside_the_tree_stay_valid(tmp_path: Path) -> None:
    root = tmp_path / "b"
    file = board(root, "renders/cut.mp4")
    (root / "cuts").mkdir()
    (root / "renders").symlink_to(root / "cuts", target_is_directory=True)
    (root / "other.lock").write_text("{}", encoding="utf-8")
    (root / "storyboard.lock").symlink_to(root / "other.lock")
    assert problems_of(file) == ()


# -- render, plan and stitch ---------------------------------------------------------------


def test_render_with_an_escaping_output_path_touches_nothing(tmp_path: Path) -> None:
    """End to end, as a user runs it: exit 2 and the file outside the tree is untouched."""
    target = tmp_path / "victim.txt"
    before = victim(target)
    file = board(tmp_path / "b", "../victim.txt")
    result = subprocess.run(
        [sys.executable, "-m", "storyboard", "render", str(file)],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert f"{file}:4:9: $.output.path: the output path '../victim.txt' is outside" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert (target.read_bytes(), target.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "victim.txt"]
    assert not (tmp_path / "b" / "renders").exists()


@pytest.mark.parametrize(
    "output", ["/abs/victim.mp4", "renders/../../victim.mp4", "renders/cut.txt"]
)
def test_render_refuses_each_bad_output_path(tmp_path: Path, output: str) -> None:
    target = tmp_path / "victim.mp4"
    before = victim(target)
    if output.startswith("/abs/"):
        output = str(target)
    file = board(tmp_path / "b", output)
    result = run_cli("render", str(file))
    assert result.code == 2
    assert f"{file}:4:9: $.output.path" in result.err
    assert (target.read_bytes(), target.stat().st_mtime_ns) == before


def test_render_through_a_linked_output_folder_touches_nothing(tmp_path: Path) -> None:
    outside = tmp_path / "home"
    before = victim(outside / "storyboard.preview.mp4")
    file = board(tmp_path / "b")
    (tmp_path / "b" / "renders").symlink_to(outside, target_is_directory=True)
    result = run_cli("render", str(file))
    assert result.code == 2, result.err
    assert "through the link 'renders'" in result.err
    target = outside / "storyboard.preview.mp4"
    assert (target.read_bytes(), target.stat().st_mtime_ns) == before
    assert sorted(p.name for p in outside.iterdir()) == ["storyboard.preview.mp4"]


def test_a_link_made_after_validation_stops_the_plan_and_the_stitch(tmp_path: Path) -> None:
    """cut_path checks when the plan is made; stitch checks again before its first write."""
    from storyboard.cache import Store
    from storyboard.plan import make_plan
    from storyboard.stitcher import stitch

    outside = tmp_path / "outside"
    outside.mkdir()
    file = board(tmp_path / "b", "renders/cut.mp4", card_only=True)
    checked = load_storyboard(file)
    store = Store.for_storyboard(checked.path)
    plan = make_plan(checked, store)
    assert plan.cut == tmp_path / "b" / "renders" / "cut.preview.mp4"
    (tmp_path / "b" / "renders").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath) as info:
        stitch(plan, store)
    assert info.value.reason == "link"
    with pytest.raises(UnsafePath):
        make_plan(checked, store)
    assert list(outside.iterdir()) == []


def test_output_option_must_name_a_video_file(tmp_path: Path) -> None:
    """-o is checked before the storyboard is even read (here it does not exist)."""
    missing = tmp_path / "nope.yaml"
    for command in ("render", "stitch"):
        result = run_cli(command, "-o", str(tmp_path / "cut.txt"), str(missing))
        assert result.code == 2
        assert "-o/--output" in result.err and "does not name a .mp4 or .mov file" in result.err
        assert "hint: give the cut's file name, e.g. -o cut.mp4" in result.err
        assert "Traceback" not in result.err
    result = run_cli("render", "-o", str(tmp_path), str(missing))
    assert result.code == 2
    assert "is a folder" in result.err


def test_output_option_may_point_outside_the_tree(tmp_path: Path) -> None:
    """-o is the user's own choice: the plan and the stitch's last check let it through."""
    from storyboard.cache import Store
    from storyboard.plan import check_cut, make_plan

    elsewhere = tmp_path / "elsewhere" / "cut.mov"
    file = board(tmp_path / "b", "renders/cut.mp4", card_only=True)
    checked = load_storyboard(file)
    plan = make_plan(checked, Store.for_storyboard(checked.path), output=elsewhere)
    assert plan.cut == elsewhere
    assert check_cut(plan) == elsewhere


@pytest.mark.slow
def test_render_with_output_option_writes_there(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "cut.mp4"
    file = board(tmp_path / "b", "renders/cut.mp4", card_only=True)
    result = run_cli("render", "-q", "-o", str(elsewhere), str(file))
    assert result.code == 0, result.err
    assert elsewhere.read_bytes()[4:8] == b"ftyp"
    assert not (tmp_path / "b" / "renders").exists()


# == 2. inputs are what they claim =========================================================


def test_each_accepted_format_is_recognised(tmp_path: Path) -> None:
    from PIL import Image

    image = Image.new("RGB", (16, 9), (10, 200, 30))
    for name, fmt in (("i.png", "PNG"), ("i.jpg", "JPEG"), ("i.jpeg", "JPEG"), ("i.webp", "WEBP")):
        image.save(tmp_path / name)
        assert check_content(tmp_path / name, "image") == fmt
    with wave.open(str(tmp_path / "s.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(1000)
        out.writeframes(b"\x80" * 3000)
    assert check_content(tmp_path / "s.wav", "audio") == "WAV"
    assert check_content(REFS / "voice.mp3", "audio") == "MP3"  # ID3 tag first
    # An MP3 without a tag starts with a frame header: MPEG-1 Layer III, 128 kb/s, 44.1 kHz.
    (tmp_path / "bare.mp3").write_bytes(b"\xff\xfb\x90\x00" + bytes(413))
    assert check_content(tmp_path / "bare.mp3", "audio") == "MP3"
    assert check_content(REFS / "clip.mov", "video") == "MP4/MOV"  # QuickTime brand
    assert check_content(REFS / "short.mp4", "video") == "MP4/MOV"  # moov after mdat


def test_what_a_wrong_file_is_named_in_the_message(tmp_path: Path) -> None:
    cases = {
        "aac.mp3": (b"\xff\xf1\x50\x80" + bytes(60), "audio", "it starts with bytes ff f1"),
        "song.mp4": (b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00mdat", "video", "M4A"),
        "photo.png": (b"\x00\x00\x00\x18ftypheic" + bytes(12), "image", "HEIF/AVIF"),
        "web.mp4": (b"\x1aE\xdf\xa3" + bytes(60), "video", "Matroska/WebM"),
        "blank.png": (b"   \n\n  ", "image", "blank space"),
        "utf8.png": ("héllo wörld ✓".encode(), "image", "'héllo wörld ✓'"),
        "pad.mp4": (b"\x00\x00\x00\x08free" + b"\x00\x00\x00\x04moov", "video", "broken at byte 8"),
    }
    for name, (data, kind, found) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(WrongContent) as info:
            check_content(tmp_path / name, kind)
        assert found in str(info.value), name
        assert info.value.kind == kind
        assert info.value.hint()
        assert info.value.exit_code == 2


@PROPERTY
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".png", ".mp4", ".wav", ".mp3"]))
def test_any_bytes_are_judged_quickly_and_without_a_crash(
    tmp_path: Path, data: bytes, suffix: str
) -> None:
    file = tmp_path / f"f{suffix}"
    file.write_bytes(data)
    started = time.perf_counter()
    fmt, found = sniff(file)
    assert time.perf_counter() - started < 0.5
    assert isinstance(found, str) and found
    kind = {".png": "image", ".mp4": "video"}.get(suffix, "audio")
    try:
        accepted = check_content(file, kind)
    except WrongContent as exc:
        assert file.name in str(exc)
    else:
        assert accepted == fmt
        assert data[:1] in (b"\x89", b"R", b"I", b"\xff") or data[4:8] in ISO_FIRST


@PROPERTY
@given(
    boxes=st.lists(
        st.tuples(
            st.sampled_from([b"ftyp", b"moov", b"mdat", b"free", b"\x00\x01ab"]),
            st.integers(0, 64),
            st.integers(-8, 8),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_the_box_walk_accepts_exactly_whole_movies(
    tmp_path: Path, boxes: list[tuple[bytes, int, int]]
) -> None:
    """A file of boxes whose sizes may lie: accepted only when every box is whole and a
    file type, movie header and media data box are all there."""
    data = b""
    honest = True
    for kind, length, lie in boxes:
        declared = 8 + length + lie
        honest = honest and lie == 0 and kind != b"\x00\x01ab"
        data += struct.pack(">I4s", declared & 0xFFFFFFFF, kind) + bytes(length)
    file = tmp_path / "m.mp4"
    file.write_bytes(data)
    types = [kind for kind, _, _ in boxes]
    whole = honest and types[0] == b"ftyp" and {b"moov", b"mdat"} <= set(types)
    fmt, found = sniff(file)
    if whole:
        assert fmt == "MP4/MOV", found
    elif fmt == "MP4/MOV":
        # A lying size may still tile the file exactly (e.g. two short boxes read as one).
        assert not honest


def test_formats_are_memoised_by_digest_beside_the_lengths(tmp_path: Path) -> None:
    """Once the digest memo knows a file, its format comes from media.json, not its bytes."""
    file = tmp_path / "in" / "voice.wav"
    file.parent.mkdir()
    shutil.copy(REFS / "voice.wav", file)
    store = tmp_path / "store"
    store.mkdir()
    memo = MediaMemo(store / "media.json", DigestMemo(store / "digests.json"))
    assert memo.content(file, "audio", hash=True) == "WAV"
    assert memo.seconds(file) == 3.5
    memo.save()
    digest = sha256_file(file)
    saved = json.loads((store / "media.json").read_text(encoding="utf-8"))
    assert saved == {digest: 3.5, "formats": {digest: "WAV"}}
    # Same size and mtime, other bytes: a fresh memo answers from media.json without reading.
    stat = file.stat()
    file.write_bytes(b"x" * stat.st_size)
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = MediaMemo(store / "media.json", DigestMemo(store / "digests.json"))
    assert again.content(file, "audio") == "WAV"
    # The same content under another extension is still what its name claims it is not.
    renamed = tmp_path / "in" / "voice.mp3"
    shutil.copy(REFS / "voice.wav", renamed)
    with pytest.raises(WrongContent, match=r"is a WAV audio named \.mp3"):
        again.content(renamed, "audio", hash=True)


def test_a_format_known_to_the_process_is_still_saved_by_a_new_memo(tmp_path: Path) -> None:
    """Another memo (another storyboard, another test) sniffed the file first: a memo with
    a file still records the format, so the next process need not read it."""
    file = tmp_path / "voice.wav"
    shutil.copy(REFS / "voice.wav", file)
    digests = DigestMemo(tmp_path / "digests.json")
    assert MediaMemo(None, digests).content(file, "audio", hash=True) == "WAV"
    memo = MediaMemo(tmp_path / "media.json", digests)
    assert memo.content(file, "audio", hash=True) == "WAV"
    memo.save()
    saved = json.loads((tmp_path / "media.json").read_text(encoding="utf-8"))
    assert saved == {"formats": {sha256_file(file): "WAV"}}


def test_without_a_known_digest_an_image_is_sniffed_not_hashed(tmp_path: Path) -> None:
    digests = DigestMemo(None)
    image = write_image(tmp_path / "a.png", (1, 2, 3))
    assert MediaMemo(None, digests).content(image, "image") == "PNG"
    assert digests.known(image) is None  # nothing hashed the file
    digests.digest(image)
    assert digests.known(image) == sha256_file(image)


def test_a_wrong_file_is_never_memoised(tmp_path: Path) -> None:
    file = tmp_path / "a.png"
    file.write_bytes(b"hello")
    memo = MediaMemo(tmp_path / "media.json", DigestMemo(None))
    for _ in range(2):
        with pytest.raises(WrongContent):
            memo.content(file, "image", hash=True)
    memo.save()
    assert not (tmp_path / "media.json").exists()


def test_validate_reports_bad_content_once_per_place(tmp_path: Path) -> None:
    """The same text file used three times is three problems, each at its own line."""
    root = tmp_path / "b"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "a.png").write_text("hello", encoding="utf-8")
    file = root / "storyboard.yaml"
    file.write_text(
        "storyboard: 1\n"
        "shots:\n"
        "  - id: fox\n"
        "    model: skyreels-v4-fast\n"
        "    prompt: a fox\n"
        "    first_frame: refs/a.png\n"
        "    last_frame: refs/a.png\n"
        "    refs: [refs/a.png]\n",
        encoding="utf-8",
    )
    problems = problems_of(file)
    assert places(problems) == {
        (6, 18, "$.shots[0].first_frame"),
        (7, 17, "$.shots[0].last_frame"),
        (8, 12, "$.shots[0].refs[0]"),
    }
    assert all(
        p.message == "'refs/a.png' is not a PNG/JPEG/WEBP image (it starts with 'hello')"
        for p in problems
    )


def test_a_text_file_named_png_is_never_uploaded_or_paid_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from storyboard.testing.emulator import Emulator, EmulatorServer

    ws, qb = "ws-e2-test-key-3kd9Qm", "qb-e2-test-key-8sLw2n"
    emu = Emulator(wavespeed_keys=(ws,), qingbo_keys=(qb,))
    with EmulatorServer(emu) as server:
        for name, value in (
            ("WAVESPEED_API_KEY", ws),
            ("QINGBO_API_KEY", qb),
            ("WAVESPEED_BASE_URL", server.url),
            ("QINGBO_BASE_URL", server.url),
            ("STORYBOARD_POLL_INTERVAL", "0.05"),
        ):
            monkeypatch.setenv(name, value)
        file = board(tmp_path / "b")
        (tmp_path / "b" / "refs" / "a.png").write_text("hello, I am text\n", encoding="utf-8")
        result = run_cli("render", "--live", str(file))
    assert result.code == 2, result.err
    assert "'refs/a.png' is not a PNG/JPEG/WEBP image (it starts with 'hello, I am text')" in (
        result.err
    )
    assert emu.requests == []
