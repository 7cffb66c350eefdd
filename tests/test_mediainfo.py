"""Media lengths read from file headers (storyboard.mediainfo): real files, no mocks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storyboard.hashing import DigestMemo, sha256_file
from storyboard.mediainfo import DurationMemo, UnreadableMedia, read_seconds
from storyboard.validate import load_storyboard

FIXTURES = Path(__file__).parent / "fixtures"
REFS = FIXTURES / "invalid" / "refs"
ROOT = Path(__file__).parent.parent

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def write_wav(path: Path, frames: int, rate: int = 1000, width: int = 1, fill: int = 0x80) -> Path:
    """A mono PCM WAV of ``frames`` samples at ``rate`` Hz (``fill`` makes its bytes unique)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(bytes([fill % 256]) * (frames * width))
    return path


# -- reading one header --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "seconds", "tolerance"),
    [
        ("clip.mov", 2.5, 0.0),  # QuickTime: the movie header's duration
        ("short.mp4", 1.0, 0.0),  # MP4 with a video track only
        ("voice.wav", 3.5, 0.0),  # WAV: data size over byte rate
        ("short.wav", 1.0, 0.0),
        ("voice.mp3", 3.5, 0.25),  # MP3: encoder padding adds a frame or two
    ],
)
def test_reads_the_length_of_each_accepted_format(
    name: str, seconds: float, tolerance: float
) -> None:
    assert read_seconds(REFS / name) == pytest.approx(seconds, abs=tolerance + 1e-6)


def test_the_extension_is_case_insensitive(tmp_path: Path) -> None:
    upper = tmp_path / "VOICE.WAV"
    shutil.copy(REFS / "voice.wav", upper)
    assert read_seconds(upper) == 3.5


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("broken.mp3", "sync"),  # text, not MPEG frames
        ("broken.wav", "fmt"),  # a RIFF header with no format chunk
        ("a.jpg", "MOV/MP3/MP4/WAV"),  # not a format whose length is read
    ],
)
def test_an_unreadable_file_says_why(name: str, reason: str) -> None:
    with pytest.raises(UnreadableMedia) as caught:
        read_seconds(REFS / name)
    assert caught.value.path == REFS / name
    assert reason in caught.value.reason
    assert f"cannot read the length of {name}" in str(caught.value)
    hint = caught.value.hint()
    assert hint is not None and f"ffmpeg -i {name}" in hint


def test_a_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableMedia, match="No such file"):
        read_seconds(tmp_path / "gone.wav")


def test_a_wav_with_no_samples_has_no_length(tmp_path: Path) -> None:
    with pytest.raises(UnreadableMedia, match="no length"):
        read_seconds(write_wav(tmp_path / "empty.wav", frames=0))


def test_a_file_of_another_format_under_an_accepted_name(tmp_path: Path) -> None:
    disguised = tmp_path / "voice.mp4"
    shutil.copy(REFS / "voice.wav", disguised)
    with pytest.raises(UnreadableMedia):
        read_seconds(disguised)


@PROPERTY
@given(
    frames=st.integers(min_value=1, max_value=40_000),
    rate=st.sampled_from([1000, 4000, 8000, 11025, 22050]),
    width=st.sampled_from([1, 2]),
)
def test_wav_length_is_frames_over_rate(tmp_path: Path, frames: int, rate: int, width: int) -> None:
    path = write_wav(tmp_path / "tone.wav", frames, rate, width)
    assert read_seconds(path) == pytest.approx(frames / rate, abs=1e-9)


@PROPERTY
@given(
    data=st.binary(max_size=2048),
    suffix=st.sampled_from([".mp4", ".mov", ".wav", ".mp3", ".MP3"]),
    header=st.sampled_from([b"", b"RIFF\x00\x01\x00\x00WAVE", b"\x00\x00\x00\x18ftypisom", b"ID3"]),
)
def test_any_bytes_give_a_length_or_unreadable(
    tmp_path: Path, data: bytes, suffix: str, header: bytes
) -> None:
    """Whatever a file holds, the answer is a positive finite length or UnreadableMedia."""
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(header + data)
    try:
        seconds = read_seconds(path)
    except UnreadableMedia as exc:
        assert exc.path == path
    else:
        assert 0 < seconds < float("inf")


# -- the memo ------------------------------------------------------------------------------


def test_lengths_are_memoised_by_content_digest(tmp_path: Path) -> None:
    """A length the memo file knows for a digest is used for any file with that content."""
    first = write_wav(tmp_path / "a" / "take.wav", frames=3500, fill=0x31)
    digest = sha256_file(first)
    memo_file = tmp_path / "store" / "media.json"
    memo_file.parent.mkdir()
    memo_file.write_text(json.dumps({digest: 12.5}), encoding="utf-8")
    memo = DurationMemo(memo_file, DigestMemo(None))
    assert memo.seconds(first) == 12.5  # the header says 3.5: the memo answered
    copy = tmp_path / "b" / "same-bytes.wav"
    copy.parent.mkdir()
    shutil.copy(first, copy)
    assert memo.seconds(copy) == 12.5  # another path, the same content


def test_a_new_length_is_read_once_and_persisted(tmp_path: Path) -> None:
    file = write_wav(tmp_path / "new.wav", frames=4200, fill=0x32)
    memo_file = tmp_path / "store" / "media.json"
    digests_file = tmp_path / "store" / "digests.json"
    memo = DurationMemo(memo_file, DigestMemo(digests_file))
    assert memo.seconds(file) == 4.2
    memo.save()
    saved = json.loads(memo_file.read_text(encoding="utf-8"))
    assert saved[sha256_file(file)] == 4.2
    assert sha256_file(file) in digests_file.read_text(encoding="utf-8")


def test_a_corrupt_memo_file_is_ignored(tmp_path: Path) -> None:
    file = write_wav(tmp_path / "x.wav", frames=3300, fill=0x33)
    memo_file = tmp_path / "media.json"
    memo_file.write_text("<<<<<<< HEAD\n{", encoding="utf-8")
    assert DurationMemo(memo_file).seconds(file) == 3.3


def test_an_unreadable_file_is_never_memoised(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp3"
    shutil.copy(REFS / "broken.mp3", bad)
    memo = DurationMemo()
    for _ in range(2):
        with pytest.raises(UnreadableMedia):
            memo.seconds(bad)


# -- validate uses it ----------------------------------------------------------------------


def _v4_board(root: Path) -> Path:
    (root / "refs").mkdir(parents=True)
    for name in ("a.jpg", "voice.wav", "clip.mov"):
        shutil.copy(REFS / name, root / "refs" / name)
    file = root / "storyboard.yaml"
    file.write_text(
        "storyboard: 1\n"
        "shots:\n"
        "  - id: singer\n"
        "    model: skyreels-v4-fast\n"
        "    prompt: a singer\n"
        "    audio: refs/voice.wav\n"
        "    reference_video: refs/clip.mov\n",
        encoding="utf-8",
    )
    return file


def test_validate_creates_no_store_but_fills_an_existing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STORYBOARD_CACHE", raising=False)
    file = _v4_board(tmp_path / "board")
    load_storyboard(file)
    store = file.parent / ".storyboard"
    assert not store.exists()
    store.mkdir()
    load_storyboard(file)
    lengths = json.loads((store / "media.json").read_text(encoding="utf-8"))
    assert lengths[sha256_file(file.parent / "refs" / "voice.wav")] == 3.5
    assert lengths[sha256_file(file.parent / "refs" / "clip.mov")] == 2.5


def test_validate_with_media_imports_neither_moviepy_nor_numpy(tmp_path: Path) -> None:
    file = _v4_board(tmp_path / "board")
    probe = (
        "import sys, json\n"
        "from storyboard.validate import load_storyboard\n"
        "load_storyboard(sys.argv[1])\n"
        "print(json.dumps({m: m in sys.modules for m in ('moviepy', 'numpy', 'httpx', 'mutagen')}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(file)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert imported == {"moviepy": False, "numpy": False, "httpx": False, "mutagen": True}
