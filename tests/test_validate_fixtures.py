"""Every failure mode of `storyboard validate`, one fixture file each, at its exact place.

Each file under ``tests/fixtures/invalid/`` is a small storyboard that is valid except for
one mistake. It opens with one or more lines::

    # expect: LINE:COL $.json.path :: message substring
    # expect: LINE:COL $.json.path :: message substring :: hint substring

and the problems reported for it must be exactly those places (the set of
``(line, col, path)``), each message containing its substring (and its hint, when one is
given). Files under ``tests/fixtures/valid/`` must validate.

Cases that need files made at run time (symlinks, files too large to commit) are separate
test functions below.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from storyboard.cli import main
from storyboard.errors import InvalidStoryboard, Problem
from storyboard.templating import parse_set
from storyboard.validate import load_storyboard

FIXTURES = Path(__file__).parent / "fixtures"
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))
VALID = sorted((FIXTURES / "valid").glob("*.yaml"))
REFS = FIXTURES / "invalid" / "refs"

_EXPECT = re.compile(
    r"^# expect: (?P<line>\d+):(?P<col>\d+) (?P<path>\S+) :: (?P<message>.*?)"
    r"(?: :: (?P<hint>.*))?$"
)


@dataclass(frozen=True)
class Expected:
    line: int
    col: int
    path: str
    message: str
    hint: str | None

    @property
    def place(self) -> tuple[int, int, str]:
        return (self.line, self.col, self.path)


def expectations(file: Path) -> list[Expected]:
    """The ``# expect:`` lines at the top of a fixture."""
    out: list[Expected] = []
    for raw in file.read_text(encoding="utf-8").splitlines():
        if not raw.startswith("# expect:"):
            break
        match = _EXPECT.match(raw)
        assert match, f"{file.name}: malformed expect line {raw!r}"
        out.append(
            Expected(
                int(match["line"]),
                int(match["col"]),
                match["path"],
                match["message"],
                match["hint"],
            )
        )
    return out


def problems_of(file: Path | str) -> tuple[Problem, ...]:
    """The problems reported for a file (empty when it is valid)."""
    try:
        load_storyboard(file)
    except InvalidStoryboard as exc:
        return exc.problems
    return ()


def assert_reported(problems: tuple[Problem, ...], expected: list[Expected]) -> None:
    shown = "\n".join(str(p) for p in problems) or "(no problems: the file is valid)"
    got = {(p.line, p.col, p.path) for p in problems}
    assert got == {e.place for e in expected}, f"reported:\n{shown}"
    for e in expected:
        here = [p for p in problems if (p.line, p.col, p.path) == e.place]
        assert any(e.message in p.message for p in here), (
            f"no message at {e.place} contains {e.message!r}:\n{shown}"
        )
        if e.hint is not None:
            assert any(p.hint and e.hint in p.hint for p in here), (
                f"no hint at {e.place} contains {e.hint!r}:\n{shown}"
            )


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    assert isinstance(code, int)
    return code, out.getvalue(), err.getvalue()


# -- the fixture files ---------------------------------------------------------------------


def test_there_is_a_fixture_per_failure_mode() -> None:
    assert len(INVALID) >= 30
    assert VALID
    for file in INVALID:
        assert expectations(file), f"{file.name} has no `# expect:` line"


@pytest.mark.parametrize("file", INVALID, ids=[f.stem for f in INVALID])
def test_invalid_fixture(file: Path) -> None:
    assert_reported(problems_of(file), expectations(file))


@pytest.mark.parametrize("file", VALID, ids=[f.stem for f in VALID])
def test_valid_fixture(file: Path) -> None:
    problems = problems_of(file)
    assert not problems, "\n".join(map(str, problems))


@pytest.mark.parametrize("file", INVALID, ids=[f.stem for f in INVALID])
def test_problem_strings_name_the_place(file: Path) -> None:
    problems = problems_of(file)
    assert problems
    for p in problems:
        first = str(p).splitlines()[0]
        if p.line > 0:
            assert first == f"{file}:{p.line}:{p.col}: {p.path}: {p.message}"
            assert p.col > 0
        else:  # about the whole file (e.g. empty): no position to name
            assert first == f"{file}: {p.path}: {p.message}"
        assert p.path.startswith("$")
        if p.hint:
            assert str(p).splitlines()[1:] == [f"    hint: {p.hint}"]


@pytest.mark.parametrize("file", INVALID, ids=[f.stem for f in INVALID])
def test_cli_json_lists_the_same_problems(file: Path) -> None:
    problems = problems_of(str(file))
    code, out, err = run_cli("validate", "--json", str(file))
    assert code == 2
    listed = json.loads(out)
    assert isinstance(listed, list)
    assert listed == [p.to_json() for p in problems]
    assert "Traceback" not in err


@pytest.mark.parametrize("file", INVALID, ids=[f.stem for f in INVALID])
def test_cli_human_output_exit_2_no_traceback(file: Path) -> None:
    code, out, err = run_cli("validate", str(file))
    assert code == 2
    assert "Traceback" not in out + err
    for p in problems_of(str(file)):
        assert str(p) in err


@pytest.mark.parametrize("file", VALID, ids=[f.stem for f in VALID])
def test_cli_valid_exit_0(file: Path) -> None:
    code, out, err = run_cli("validate", str(file))
    assert (code, err) == (0, "")
    assert "valid" in out
    code, out, err = run_cli("validate", "--json", str(file))
    assert code == 0
    assert json.loads(out) == []


def test_cli_many_files_reports_them_all() -> None:
    invalid = FIXTURES / "invalid"
    files = [
        str(invalid / "unknown_shot_key.yaml"),
        str(FIXTURES / "valid" / "defaults_ignored.yaml"),
        str(invalid / "wrong_format_version.yaml"),
    ]
    code, out, _ = run_cli("validate", "--json", *files)
    assert code == 2
    listed = json.loads(out)
    assert {p["file"] for p in listed} == {files[0], files[2]}


def test_valid_defaults_not_accepted_by_a_model_are_ignored() -> None:
    board = load_storyboard(FIXTURES / "valid" / "defaults_ignored.yaml")
    still, refs, wide = board.shots
    assert still.model == "skyreels-v1"
    assert (still.resolution, still.aspect_ratio, still.duration) == (None, None, None)
    assert still.seed == 42
    assert refs.resolution is None
    assert (refs.aspect_ratio, refs.duration) == ("9:16", 8)
    assert (wide.model, wide.resolution, wide.aspect_ratio) == ("skyreels-v4-fast", "1080p", "9:16")


# -- templating and --set ------------------------------------------------------------------


def test_templates_render_in_scope() -> None:
    board = load_storyboard(FIXTURES / "valid" / "templated.yaml")
    opening, detail, title = board.shots
    assert opening.prompt == "a red fox in snow, take 1 of shot opening"
    assert opening.aspect_ratio == "16:9"
    assert detail.prompt.startswith("A RED FOX,\n")
    assert "golden dawn light" in detail.prompt
    assert title.card is not None
    assert title.card.text == "Snow"


def test_set_overrides_vars() -> None:
    file = FIXTURES / "valid" / "templated.yaml"
    overrides = parse_set(["hero=fox", "n=3"])
    assert overrides == {"hero": "fox", "n": 3}
    board = load_storyboard(file, overrides=overrides)
    assert board.vars["hero"] == "fox"
    assert board.vars["n"] == 3
    assert type(board.vars["n"]) is int
    assert board.shots[0].prompt == "fox in snow, take 3 of shot opening"


def test_cli_set_makes_an_undefined_variable_defined(tmp_path: Path) -> None:
    file = tmp_path / "needs-hero.yaml"
    file.write_text(
        "storyboard: 1\nshots:\n  - id: a\n    model: skyreels-v4-fast\n"
        "    prompt: '{{ hero }} x{{ n + 1 }}'\n",
        encoding="utf-8",
    )
    code, _, err = run_cli("validate", str(file))
    assert code == 2
    assert f"{file}:5:13: $.shots[0].prompt: template error: 'hero' is undefined" in err
    code, out, err = run_cli("validate", "--set", "hero=fox", "--set", "n=3", str(file))
    assert (code, err) == (0, "")
    assert "valid" in out
    board = load_storyboard(file, overrides=parse_set(["hero=fox", "n=3"]))
    assert board.shots[0].prompt == "fox x4"


def test_cli_bad_set_is_a_usage_error() -> None:
    file = FIXTURES / "valid" / "templated.yaml"
    code, _, err = run_cli("validate", "--set", "no-equals", str(file))
    assert code == 2
    assert "NAME=VALUE" in err
    assert "Traceback" not in err


# -- cases built at run time ---------------------------------------------------------------


def _board(root: Path, first_frame: str) -> Path:
    """A one-shot storyboard in ``root`` whose V1 first frame is ``first_frame`` (line 6)."""
    root.mkdir(parents=True, exist_ok=True)
    file = root / "storyboard.yaml"
    file.write_text(
        "storyboard: 1\n"
        "shots:\n"
        "  - id: fox\n"
        "    model: skyreels-v1\n"
        "    prompt: a red fox\n"
        f"    first_frame: {first_frame}\n",
        encoding="utf-8",
    )
    return file


def test_symlink_pointing_outside_is_an_error(tmp_path: Path) -> None:
    outside = tmp_path / "outside.jpg"
    shutil.copy(REFS / "a.jpg", outside)
    root = tmp_path / "board"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "link.jpg").symlink_to(outside)
    file = _board(root, "refs/link.jpg")
    problems = problems_of(file)
    assert_reported(
        problems,
        [Expected(6, 18, "$.shots[0].first_frame", "outside the storyboard's folder", None)],
    )


def test_symlinked_folder_pointing_outside_is_an_error(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(REFS / "a.jpg", elsewhere / "a.jpg")
    root = tmp_path / "board"
    root.mkdir()
    (root / "refs").symlink_to(elsewhere, target_is_directory=True)
    file = _board(root, "refs/a.jpg")
    assert_reported(
        problems_of(file),
        [Expected(6, 18, "$.shots[0].first_frame", "outside the storyboard's folder", None)],
    )


def test_symlink_inside_the_folder_is_fine(tmp_path: Path) -> None:
    root = tmp_path / "board"
    (root / "refs").mkdir(parents=True)
    shutil.copy(REFS / "a.jpg", root / "refs" / "a.jpg")
    (root / "refs" / "alias.jpg").symlink_to(root / "refs" / "a.jpg")
    file = _board(root, "refs/alias.jpg")
    assert problems_of(file) == ()


def test_file_too_large(tmp_path: Path) -> None:
    root = tmp_path / "board"
    (root / "refs").mkdir(parents=True)
    big = root / "refs" / "big.jpg"
    with big.open("wb") as fh:  # sparse: takes no disk space
        fh.truncate(31 * 1024 * 1024)
    file = _board(root, "refs/big.jpg")
    assert_reported(
        problems_of(file),
        [Expected(6, 18, "$.shots[0].first_frame", "at most 30 MB", None)],
    )


def test_soundtrack_too_large(tmp_path: Path) -> None:
    root = tmp_path / "board"
    (root / "music").mkdir(parents=True)
    with (root / "music" / "long.wav").open("wb") as fh:
        fh.truncate(16 * 1024 * 1024)
    shutil.copy(REFS / "a.jpg", root / "a.jpg")
    file = root / "storyboard.yaml"
    file.write_text(
        "storyboard: 1\n"
        "output:\n"
        "  audio:\n"
        "    path: music/long.wav\n"
        "shots:\n"
        "  - id: fox\n"
        "    model: skyreels-v1\n"
        "    first_frame: a.jpg\n"
        "    prompt: a red fox\n",
        encoding="utf-8",
    )
    assert_reported(
        problems_of(file),
        [Expected(4, 11, "$.output.audio.path", "at most 15 MB", None)],
    )


def test_missing_storyboard_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    code, _, err = run_cli("validate", str(missing))
    assert code == 2
    assert f"{missing}: $: no such file" in err


def test_storyboard_not_utf8(tmp_path: Path) -> None:
    file = tmp_path / "latin1.yaml"
    file.write_bytes(b"storyboard: 1\ntitle: caf\xe9\nshots: []\n")
    problems = problems_of(file)
    assert [(p.line, p.path) for p in problems] == [(2, "$")]
    assert "UTF-8" in problems[0].message


# -- media lengths, the seeds' limits (issue 7) --------------------------------------------


def _wav(path: Path, seconds: float, rate: int = 1000) -> None:
    """A silent mono 8-bit WAV of ``seconds`` (1 kHz keeps a 31 s file at 31 KB)."""
    import wave

    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(rate)
        out.writeframes(b"\x80" * round(seconds * rate))


def _v4_board(root: Path, *lines: str) -> Path:
    """A one-shot V4 storyboard; ``lines`` are the shot's extra fields (from line 6 on)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    shutil.copy(REFS / "a.jpg", root / "refs" / "a.jpg")
    file = root / "storyboard.yaml"
    file.write_text(
        "storyboard: 1\n"
        "shots:\n"
        "  - id: singer\n"
        "    model: skyreels-v4-fast\n"
        "    prompt: a singer on a stage\n" + "".join(f"    {line}\n" for line in lines),
        encoding="utf-8",
    )
    return file


@pytest.mark.parametrize(
    ("seconds", "ok"),
    [(2.999, False), (3.0, True), (17.25, True), (30.0, True), (30.001, False), (31.0, False)],
)
def test_audio_length_limits_are_inclusive(tmp_path: Path, seconds: float, ok: bool) -> None:
    _wav(tmp_path / "b" / "media" / "voice.wav", seconds)
    file = _v4_board(tmp_path / "b", "audio: media/voice.wav")
    problems = problems_of(file)
    if ok:
        assert problems == ()
        assert load_storyboard(file).shots[0].audio[0].source == "media/voice.wav"
    else:
        hint = "cut it to 30 s" if seconds > 30 else "at least 3 s"
        assert_reported(
            problems,
            [
                Expected(
                    6, 12, "$.shots[0].audio", f"lasts {seconds:g} s; audio must last 3-30 s", hint
                )
            ],
        )


def test_long_audio_bound_to_a_ref(tmp_path: Path) -> None:
    _wav(tmp_path / "b" / "media" / "song.wav", 45)
    file = _v4_board(
        tmp_path / "b", "refs:", "  - {tag: char, image: refs/a.jpg, audio: media/song.wav}"
    )
    assert_reported(
        problems_of(file),
        [
            Expected(
                7,
                47,
                "$.shots[0].refs[0].audio",
                "'media/song.wav' lasts 45 s",
                "ffmpeg -i song.wav -t 30",
            )
        ],
    )


@pytest.mark.slow
def test_reference_video_too_long(tmp_path: Path) -> None:
    import imageio_ffmpeg

    (tmp_path / "b" / "media").mkdir(parents=True)
    video = tmp_path / "b" / "media" / "long.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
         "-f", "lavfi", "-i", "color=c=gray:size=16x16:rate=1", "-t", "31", "-pix_fmt", "yuv420p",
         "-c:v", "libx264", "-preset", "ultrafast", str(video)],
        check=True, capture_output=True,
    )  # fmt: skip
    file = _v4_board(tmp_path / "b", "reference_video: media/long.mp4")
    assert_reported(
        problems_of(file),
        [
            Expected(
                6,
                22,
                "$.shots[0].reference_video",
                "lasts 31 s; a reference video must last 2-30 s",
                "cut it to 30 s",
            )
        ],
    )


def test_urls_are_not_probed(tmp_path: Path) -> None:
    file = _v4_board(
        tmp_path / "b",
        "audio: https://cdn.example.com/voice.mp3",
        "reference_video: https://cdn.example.com/ref.mp4",
    )
    shot = load_storyboard(file).shots[0]
    assert [m.is_url for m in shot.audio] == [True]
    assert shot.reference_video is not None and shot.reference_video.is_url


def test_the_soundtrack_has_no_length_limit(tmp_path: Path) -> None:
    root = tmp_path / "b"
    _wav(root / "music" / "long.wav", 40)
    file = _v4_board(root)
    file.write_text(
        file.read_text(encoding="utf-8") + "output:\n  audio: {path: music/long.wav}\n",
        encoding="utf-8",
    )
    assert problems_of(file) == ()


def test_a_v4_shot_whose_local_audio_cannot_be_read_is_not_planned(tmp_path: Path) -> None:
    root = tmp_path / "b"
    (root / "media").mkdir(parents=True)
    (root / "media" / "voice.wav").write_bytes(b"RIFF....WAVEdata")
    file = _v4_board(root, "audio: [media/voice.wav]")
    assert_reported(
        problems_of(file),
        [
            Expected(
                6, 13, "$.shots[0].audio[0]", "cannot read the length of 'media/voice.wav'", "WAV"
            )
        ],
    )


def test_both_audios_are_reported_at_the_later_one(tmp_path: Path) -> None:
    """Whichever comes second in the file is the one reported, shot field or defaults."""
    root = tmp_path / "b"
    file = _v4_board(
        root,
        "refs:",
        "  - {tag: char, image: refs/a.jpg, audio: refs/voice.wav}",
        "audio: refs/voice.wav",
    )
    shutil.copy(REFS / "voice.wav", root / "refs" / "voice.wav")
    assert_reported(
        problems_of(file),
        [Expected(8, 12, "$.shots[0].audio", "not both", "keep one")],
    )
    # Audio from defaults comes first in the file: the ref's audio is the second one.
    file.write_text(
        "storyboard: 1\n"
        "defaults: {audio: refs/voice.wav}\n"
        "shots:\n"
        "  - id: singer\n"
        "    model: skyreels-v4-fast\n"
        "    refs: [{tag: char, image: refs/a.jpg, audio: refs/voice.wav}]\n",
        encoding="utf-8",
    )
    assert_reported(
        problems_of(file),
        [Expected(6, 50, "$.shots[0].refs[0].audio", "not both", None)],
    )


def test_a_keyframe_tag_reaches_the_shot() -> None:
    board = load_storyboard(FIXTURES / "valid" / "media_lengths.yaml")
    dance = board.shot("dance")
    assert [(k.at, k.tag) for k in dance.keyframes] == [(2.0, "kf_2s")]
    every = load_storyboard(FIXTURES / "valid" / "every_field.yaml")
    assert [k.tag for k in every.shot("dew").keyframes] == [None]


# -- params cannot carry what storyboard prices or checks (issue 7) ------------------------


def test_every_reserved_param_is_rejected_on_its_model(tmp_path: Path) -> None:
    """For each model, each reserved key in params is one problem at that key's place."""
    from storyboard.catalog import MODELS

    for spec in MODELS.values():
        root = tmp_path / spec.id
        for key in spec.reserved_params:
            file = _board(root, "refs/a.jpg")
            file.write_text(
                "storyboard: 1\n"
                "shots:\n"
                "  - id: fox\n"
                f"    model: {spec.id}\n"
                "    params:\n"
                f"      {key}: 1\n"
                "      camera: static\n",
                encoding="utf-8",
            )
            found = [p for p in problems_of(file) if ".params." in p.path]
            assert [(p.line, p.col, p.path) for p in found] == [
                (6, 7, f"$.shots[0].params.{key}")
            ], (
                spec.id,
                key,
            )
            assert f"params may not set {key!r}" in found[0].message
            assert found[0].hint


def test_params_keys_that_are_not_reserved_pass_unchanged() -> None:
    board = load_storyboard(FIXTURES / "valid" / "media_lengths.yaml")
    assert dict(board.shot("singer").params) == {
        "callback_url": "https://hooks.example.com/done",
        "camera": "static",
    }
    assert dict(board.shot("still").params) == {"enable_safety_checker": False}


# -- transitions fit the footage they join (issue 9 item 4) --------------------------------


def test_a_bare_transition_name_too_long_for_a_card_points_at_it(tmp_path: Path) -> None:
    """``transition: fade`` is 0.5 s; into a 0.25 s card it is reported where it is written
    and names both shots; the CLI exits 2 instead of cutting a shorter fade."""
    file = tmp_path / "storyboard.yaml"
    file.write_text(
        "storyboard: 1\n"
        "shots:\n"
        "  - id: opening\n"
        "    card: {text: Hello, duration: 2}\n"
        "    transition: fade\n"
        "  - id: flash\n"
        "    card: {text: '!', duration: 0.25}\n",
        encoding="utf-8",
    )
    code, _, err = run_cli("validate", str(file))
    assert code == 2
    assert (
        f"{file}:5:17: $.shots[0].transition: the 0.5 s fade between 'opening' and 'flash' "
        "is longer than 'flash' (a 0.25 s card)"
    ) in err
    assert "hint: shorten the transition to at most 0.25 s, or lengthen 'flash'" in err


_cards = st.fixed_dictionaries(
    {"card": st.fixed_dictionaries({"text": st.just("T"), "duration": st.sampled_from(
        [0.05, 0.25, 0.5, 1.0, 1.5, 2.0, 3.3])})},
    optional={"skip": st.booleans()},
)  # fmt: skip
_model_shots = st.fixed_dictionaries(
    {
        "model": st.just("skyreels-v4-fast"),
        "prompt": st.just("a fox"),
        "duration": st.integers(3, 5),
    },
    optional={
        "trim": st.sampled_from([{"start": 1.0}, {"end": 1.0}, {"start": 0.5, "end": 2.75}]),
        "skip": st.booleans(),
    },
)
_transitions = st.one_of(
    st.sampled_from(["cut", "crossfade", "fade"]),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["cut", "crossfade", "wipe-left"])},
        optional={"duration": st.sampled_from([0.0, 0.04, 0.5, 1.0, 1.5, 2.5, 4.0, 10.0])},
    ),
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    items=st.lists(
        st.tuples(st.one_of(_cards, _model_shots), st.one_of(st.none(), _transitions)),
        min_size=2,
        max_size=5,
    ),
    default=st.one_of(st.none(), _transitions),
    fps=st.sampled_from([12, 24, 30]),
)
def test_a_transition_is_an_error_exactly_when_the_stitcher_would_shorten_it(
    tmp_path_factory: pytest.TempPathFactory,
    items: list[tuple[dict[str, Any], Any]],
    default: Any,
    fps: int,
) -> None:
    """The validator's verdict is the stitcher's own clamp (``cutter._clamp``) on the
    lengths the stitcher counts: cards their duration, model shots their trimmed length."""
    from storyboard.cutter import _clamp

    shots = []
    for i, (fields, transition) in enumerate(items):
        shot = {"id": f"s{i}", **fields}
        if transition is not None:
            shot["transition"] = transition
        shots.append(shot)
    output: dict[str, Any] = {"fps": fps}
    if default is not None:
        output["transition"] = default
    file = tmp_path_factory.mktemp("t") / "storyboard.yaml"
    file.write_text(
        yaml.safe_dump({"storyboard": 1, "output": output, "shots": shots}), encoding="utf-8"
    )

    def seconds(t: Any) -> float:
        if t is None or t == "cut" or (isinstance(t, dict) and t["type"] == "cut"):
            return 0.0
        return float(t.get("duration", 0.5)) if isinstance(t, dict) else 0.5

    cut = [s for s in shots if not s.get("skip")]
    lengths = []
    for s in cut:
        if "card" in s:
            length = s["card"]["duration"]
        else:
            trim = s.get("trim", {})
            length = trim.get("end", s["duration"]) - trim.get("start", 0.0)
        lengths.append(max(1, round(length * fps)))
    requested = [round(seconds(s.get("transition", default)) * fps) for s in cut[:-1]]
    shortened = {
        cut[i]["id"]
        for i, (want, got) in enumerate(zip(requested, _clamp(requested, lengths), strict=True))
        if got < want
    }
    problems = problems_of(file)
    assert {p.shot for p in problems} == shortened, "\n".join(map(str, problems))
    assert all("transition" in p.path and "longer than" in p.message for p in problems)
