"""``output.fps`` and ``output.resolution: auto`` (issue 13 item 3, format side).

``auto`` (the default) is what most shots' models produce, from the catalogue, so a
storyboard of one model family is cut at its clips' own format and they need no re-encode.
An explicit value behaves as before, edit key included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Project, run_cli

from storyboard.catalog import MODELS, frame_size
from storyboard.keys import CutClip, edit_key
from storyboard.model import Card, Shot, resolve_output
from storyboard.schema import schema_text
from storyboard.stitcher import cut_spec
from storyboard.validate import load_storyboard


def _shot(i: int, model: str | None, **fields: Any) -> Shot:
    return Shot(id=f"s{i}", index=i, line=i + 1, model=model, **fields)


def _v4(i: int, resolution: str = "720p", aspect_ratio: str | None = None) -> Shot:
    return _shot(i, "skyreels-v4-fast", resolution=resolution, aspect_ratio=aspect_ratio)


def _auto(shots: list[Shot], aspect_ratio: str | None = None) -> tuple[int, str, str]:
    fps, resolution, ratio, auto = resolve_output(
        shots, fps=None, resolution=None, aspect_ratio=aspect_ratio
    )
    assert auto == ("fps", "resolution")
    return fps, resolution, ratio


def test_auto_is_what_most_shots_models_produce() -> None:
    v1 = [_shot(i, "skyreels-v1") for i in range(2)]
    assert _auto([_v4(0), *v1[:1]]) == (32, "720p", "16:9")  # a tie: the earlier shot's
    assert _auto([*v1[:1], _v4(1)]) == (24, "960x544", "16:9")
    assert _auto([_v4(0), *v1]) == (24, "960x544", "16:9")  # two V1 shots against one
    # Every model's own geometry, for the shot's settings.
    assert _auto([_v4(0, "1080p", "9:16")]) == (32, "1080p", "9:16")
    assert _auto([_v4(0, "480p", "1:1")]) == (32, "480p", "1:1")
    ref = _shot(0, "skyreels-v3-reference", aspect_ratio="1:1")
    assert _auto([ref]) == (24, "960x960", "1:1")  # V3's 1:1 bucket is not 720x720


def test_cards_and_skipped_shots_do_not_count() -> None:
    card = _shot(0, None, card=Card("Hello", 2.0))
    skipped = [_shot(i, "skyreels-v1", skip=True) for i in (1, 2, 3)]
    assert _auto([card, *skipped, _v4(4, "480p")]) == (32, "480p", "16:9")
    # No model shot at all: the former defaults.
    assert _auto([card, *skipped]) == (24, "720p", "16:9")


def test_a_written_aspect_ratio_counts_only_shots_of_that_shape() -> None:
    shots = [_v4(0, "1080p", "16:9"), _v4(1, "1080p", "16:9"), _v4(2, "480p", "9:16")]
    assert _auto(shots) == (32, "1080p", "16:9")
    assert _auto(shots, "9:16") == (32, "480p", "9:16")
    # No shot of that shape: the named resolution nearest the most common short side.
    assert _auto(shots, "1:1") == (32, "1080p", "1:1")
    assert _auto([_shot(0, "skyreels-v1")], "4:3") == (24, "480p", "4:3")  # 544 is nearest 480
    # 960x544 is 16:9 within 2 %: the V1 size is kept whole.
    assert _auto([_shot(0, "skyreels-v1")], "16:9") == (24, "960x544", "16:9")


def test_written_values_are_kept() -> None:
    shots = [_v4(0, "1080p"), _v4(1, "1080p")]
    done = resolve_output(shots, fps=25, resolution="480p", aspect_ratio=None)
    assert done == (25, "480p", "16:9", ())
    assert resolve_output(shots, fps=None, resolution="480p", aspect_ratio="1:1") == (
        32,
        "480p",
        "1:1",
        ("fps",),
    )
    assert resolve_output(shots, fps=12, resolution=None, aspect_ratio=None)[1:] == (
        "1080p",
        "16:9",
        ("resolution",),
    )


def test_exact_sizes_are_frame_sizes() -> None:
    assert frame_size("960x544", "16:9") == (960, 544)
    assert frame_size("960x960", "1:1") == (960, 960)
    for model in MODELS.values():  # every size auto may pick is even (H.264 needs that)
        for ratio in model.aspect_ratios or (None,):
            for resolution in model.resolutions or (None,):
                width, height = model.size(resolution, ratio)
                assert width % 2 == height % 2 == 0, model.id


# -- through validate --------------------------------------------------------------------


def _board(output: dict[str, Any] | None, shots: list[dict[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {"storyboard": 1, "shots": shots}
    if output is not None:
        data["output"] = output
    return data


def _load(project: Project, data: dict[str, Any]) -> Any:
    project.write(yaml.safe_dump(data, sort_keys=False))
    return load_storyboard(project.file)


V4_SHOTS = [
    {"id": "a", "model": "skyreels-v4-fast", "prompt": "a kite", "resolution": "480p"},
    {"id": "b", "model": "skyreels-v4-fast", "prompt": "a door", "resolution": "480p"},
    {"id": "c", "model": "skyreels-v1", "prompt": "a field", "first_frame": "refs/a.png"},
    {"id": "end", "card": {"text": "The end", "duration": 1.0}},
]


def test_auto_is_the_default_and_may_be_written(project: Project) -> None:
    absent = _load(project, _board(None, V4_SHOTS)).output
    written = _load(project, _board({"fps": "auto", "resolution": "auto"}, V4_SHOTS)).output
    assert absent == written
    assert (absent.fps, absent.resolution, absent.aspect_ratio) == (32, "480p", "16:9")
    assert absent.auto == ("fps", "resolution") and absent.size == (854, 480)
    assert absent.describe() == "854x480 at 32 fps (auto)"
    assert absent.to_json() == {
        "fps": 32,
        "resolution": "480p",
        "aspect_ratio": "16:9",
        "width": 854,
        "height": 480,
        "auto": ["fps", "resolution"],
    }
    spec = cut_spec(_load(project, _board(None, V4_SHOTS)))
    assert (spec.width, spec.height, spec.fps) == (854, 480, 32)
    one = _load(project, _board({"fps": 30}, V4_SHOTS)).output
    assert one.describe() == "854x480 at 30 fps (resolution auto)"


def test_a_defaults_model_and_resolution_decide_auto(project: Project) -> None:
    data = _board(None, [{"id": f"s{i}", "prompt": "a kite"} for i in range(3)])
    data["defaults"] = {"model": "skyreels-v4-std", "resolution": "1080p", "aspect_ratio": "9:16"}
    out = _load(project, data).output
    assert (out.fps, out.size) == (32, (1080, 1920))


def test_explicit_values_behave_as_before(project: Project) -> None:
    out = _load(project, _board({"fps": 24, "resolution": "720p"}, V4_SHOTS)).output
    assert (out.fps, out.resolution, out.aspect_ratio, out.auto) == (24, "720p", "16:9", ())
    assert out.size == (1280, 720) and out.describe() == "1280x720 at 24 fps"


def _edit_key(project: Project, output: dict[str, Any] | None) -> str | None:
    board = _load(project, _board(output, V4_SHOTS))
    clips = {s.id: CutClip(f"{i:064x}", 3.0) for i, s in enumerate(board.shots) if s.model}
    return edit_key(board, clips, project.root / "cut.mp4", lambda media: "")


def test_the_edit_key_of_auto_is_that_of_the_same_values_written(project: Project) -> None:
    auto = _edit_key(project, None)
    assert auto is not None
    assert auto == _edit_key(project, {"fps": 32, "resolution": "480p"})
    assert auto == _edit_key(project, {"fps": 32, "resolution": "480p", "aspect_ratio": "16:9"})
    assert auto != _edit_key(project, {"fps": 24, "resolution": "720p"})  # the old defaults
    assert auto != _edit_key(project, {"fps": 24})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"25"', "'25' is not a frame rate"),
        ("23.976", "expected an integer or auto, got float 23.976"),
        ("0", "0 is less than the minimum of 1"),
        ("Auto", "'Auto' is not a frame rate"),
    ],
)
def test_a_wrong_fps_is_reported_at_its_line(project: Project, value: str, message: str) -> None:
    project.write(
        f"storyboard: 1\noutput:\n  fps: {value}\nshots:\n"
        "  - id: a\n    model: skyreels-v4-fast\n    prompt: a kite\n"
    )
    result = run_cli("validate", str(project.file))
    assert result.code == 2
    assert f"storyboard.yaml:3:8: $.output.fps: {message}" in result.err


def test_a_wrong_resolution_names_auto(project: Project) -> None:
    project.write(
        "storyboard: 1\noutput:\n  resolution: 4k\nshots:\n"
        "  - id: a\n    model: skyreels-v4-fast\n    prompt: a kite\n"
    )
    result = run_cli("validate", str(project.file))
    assert result.code == 2
    assert "is not one of: auto, 480p, 720p, 1080p" in result.err


def test_the_schema_documents_auto() -> None:
    import json

    output = json.loads(schema_text())["properties"]["output"]["properties"]
    assert output["fps"]["default"] == output["resolution"]["default"] == "auto"
    assert "auto" in output["resolution"]["enum"]
    assert "most shots' models produce" in output["fps"]["description"]


def test_the_transition_check_uses_the_resolved_fps(project: Project) -> None:
    # 1.01 s on screen is 24 frames at 24 fps and 32 at 32; a 1.02 s crossfade is 24 and 33.
    shots = [dict(s, duration=3, trim={"start": 0, "end": 1.01}) for s in V4_SHOTS[:2]]
    output: dict[str, Any] = {"transition": {"type": "crossfade", "duration": 1.02}}
    project.write(yaml.safe_dump(_board(output, shots), sort_keys=False))
    result = run_cli("validate", str(project.file))
    assert result.code == 2 and "crossfade" in result.err, result.err
    project.write(yaml.safe_dump(_board({**output, "fps": 24}, shots), sort_keys=False))
    assert run_cli("validate", str(project.file)).code == 0


def test_validate_of_the_examples_resolves_auto(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent / "examples"
    minimal = load_storyboard(root / "minimal" / "storyboard.yaml").output
    assert minimal.auto == ("fps", "resolution") and minimal.fps == 32
    dawn = load_storyboard(root / "dawn" / "storyboard.yaml").output
    assert (dawn.fps, dawn.resolution, dawn.auto) == (24, "480p", ())  # written: as before


FAMILY_BOARD = """\
storyboard: 1
defaults:
  model: skyreels-v4-fast
  resolution: 480p
  duration: 3
shots:
  - id: kite
    prompt: a red kite over a field, push-in
  - id: door
    prompt: a blue door, pan left
  - id: end
    card: {text: "The end", duration: 1.0}
"""


def _packets(video: Path, out: Path) -> list[str]:
    """(size, md5) of each video packet as stored, in decoding order."""
    from storyboard.media import ffmpeg

    args = ["-i", str(video), "-map", "0:v:0", "-c", "copy", "-f", "framemd5", str(out)]
    ffmpeg.run(args, what="packets", timeout=60)
    rows = [line.split(",") for line in out.read_text().splitlines() if line[:1] != "#"]
    return [f"{row[4].strip()} {row[5].strip()}" for row in rows]


@pytest.mark.slow
def test_the_preview_cut_of_one_model_family_copies_its_clips(
    project: Project, tmp_path: Path
) -> None:
    """No output settings: the cut is at V4's 32 fps and 854x480, the preview renders each
    shot so, and the stitcher copies both clips' pictures byte for byte (only the card is
    encoded); the cut lasts the clips plus the card, to the frame."""
    project.write(FAMILY_BOARD)
    done = run_cli("render", str(project.file))
    assert done.code == 0, done.err
    clips = {s["id"]: Path(s["output"]) for s in project.plan()["shots"] if s["output"]}
    cut = project.root / "renders" / "storyboard.preview.mp4"
    got = _packets(cut, tmp_path / "cut.txt")
    kite = _packets(clips["kite"], tmp_path / "kite.txt")
    door = _packets(clips["door"], tmp_path / "door.txt")
    assert len(kite) == len(door) == 96
    assert got[:96] == kite and got[96:192] == door
    assert len(got) == 96 + 96 + 32  # the card: 1 s at 32 fps


def test_validate_says_the_cut_format_it_resolved() -> None:
    from tests.conftest import EXAMPLES, run_cli

    minimal = run_cli("validate", str(EXAMPLES / "minimal" / "storyboard.yaml"))
    assert minimal.code == 0
    assert "cut 854x480 at 32 fps (auto)" in minimal.out
    dawn = run_cli("validate", str(EXAMPLES / "dawn" / "storyboard.yaml"))
    assert "cut 854x480 at 24 fps)" in dawn.out  # written in the file: no "(auto)"


def test_plan_json_gives_the_cut_format_it_resolved(project: Project) -> None:
    # the format test_auto_is_the_default_and_may_be_written spells out: 854x480 at 32 fps
    output = _load(project, _board(None, V4_SHOTS)).output
    assert (output.size, output.fps, output.auto) == ((854, 480), 32, ("fps", "resolution"))
    assert project.plan()["format"] == output.to_json()
    _load(project, _board({"fps": 24, "resolution": "720p"}, V4_SHOTS))
    fixed = project.plan()["format"]
    assert (fixed["width"], fixed["height"], fixed["fps"], fixed["auto"]) == (1280, 720, 24, [])
