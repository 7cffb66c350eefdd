"""The one encoding of a cut's pieces and seams, so that they join by stream copy.

Every piece (:mod:`storyboard.cutter`) and every seam (:mod:`storyboard.seams`) is H.264
yuv420p High profile without B-frames at the cut's fps, with BT.709 tags, and no sound (the
cut's sound is one track of its own, :mod:`storyboard.media.audiotrack`). Pieces (whole
clips that do not conform, cards) are encoded for size (:func:`video_codec_args`); seams,
a few frames each, for speed (:func:`seam_codec_args`). Their parameter sets carry the ids
:data:`PARAMETER_SET_ID` and :data:`SEAM_PARAMETER_SET_ID`: clips that are copied into the
cut as they are keep theirs (usually id 0), and the cut's sample description lists them
all, so that every sample decodes with its own (:data:`RESERVED_IDS` are never copied).
:func:`fit_filter` brings any source to the cut's frame size and to BT.709 on the way in.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storyboard.media.probe import Colour

__all__ = [
    "COLOUR",
    "MUX_ARGS",
    "PARAMETER_SET_ID",
    "RESERVED_IDS",
    "SAMPLE_RATE",
    "SEAM_PARAMETER_SET_ID",
    "SWS_ACCURATE",
    "fit_filter",
    "samples",
    "seam_codec_args",
    "temp_sibling",
    "timeout",
    "video_codec_args",
]

SAMPLE_RATE = 48_000
#: The SPS and PPS id of every piece.
PARAMETER_SET_ID = 1
#: The SPS and PPS id of every seam (encoded with other settings, so other parameter sets).
SEAM_PARAMETER_SET_ID = 2
#: Ids clips copied into the cut must not use.
RESERVED_IDS = frozenset({PARAMETER_SET_ID, SEAM_PARAMETER_SET_ID})
# Deadlines: a fixed allowance for process start-up plus a generous rate per second of media
# (a single-threaded x264 "veryfast" encode of 4K runs at about real time on a slow core).
_BASE_TIMEOUT = 60.0
_TIMEOUT_PER_SECOND = 20.0


def timeout(media_seconds: float) -> float:
    """The deadline of an ffmpeg run over ``media_seconds`` of media."""
    return _BASE_TIMEOUT + _TIMEOUT_PER_SECOND * media_seconds


def video_codec_args(fps: int) -> list[str]:
    """Encoder settings shared by every piece and seam, so that they join by stream copy.

    No B-frames: every piece then has pts == dts and starts and ends exactly on its frames.
    One thread: x264's output depends on its thread count, so a fixed count keeps the bytes
    the same on every machine; parallelism comes from encoding several pieces at once.
    A lookahead of two frames: each frame x264 looks ahead holds some 10 MB at 1080p (the
    preset's ten made one encoder 188 MB); files are no larger for short pieces.
    """
    return _x264(fps, "veryfast", f"sps-id={PARAMETER_SET_ID}:rc-lookahead=2")


def seam_codec_args(fps: int) -> list[str]:
    """Encoder settings of every seam: like :func:`video_codec_args`, but x264's
    ``ultrafast`` analysis (with CABAC and the deblocking filter, which cost little), at the
    same ``-crf``.

    A seam is a transition and the frames up to the next clip's first copied IDR picture,
    so a first cut with transitions encodes about twice the frames the transitions last;
    this halves what encoding them costs. At the same crf the pictures are no worse (on the
    benchmark's 720p seams, PSNR against the composite 52.6 dB, against ``veryfast``'s
    46.5 dB: no adaptive quantisation spends the bits evenly) and the seam's bytes about
    1.9 times as many. Their parameter sets differ (no 8x8 transform, no weighted
    prediction), hence an id of their own.
    """
    return _x264(fps, "ultrafast", f"sps-id={SEAM_PARAMETER_SET_ID}:cabac=1:deblock=1")


def _x264(fps: int, preset: str, params: str) -> list[str]:
    return [
        "-c:v", "libx264", "-preset", preset, "-crf", "18",
        "-profile:v", "high", "-pix_fmt", "yuv420p", "-bf", "0", "-threads", "1",
        "-x264-params", params, "-video_track_timescale", str(fps * 1000),
        "-flags:v", "+bitexact", "-an",
    ]  # fmt: skip


MUX_ARGS = ["-fflags", "+bitexact", "-map_metadata", "-1", "-map_chapters", "-1"]
# Every encode ends with the same conversion and colour tags: the tags end up in the SPS, and
# pieces whose SPS differ cannot be joined by stream copy.
COLOUR = (
    "format=yuv420p,"
    "setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709,setsar=1"
)
# swscale's default converts between YUV and RGB (or between matrices) about one luma step
# too dark; these flags make it exact, at some cost, so they are used only where swscale
# converts colour: RGB cards, unusual sources, and the contact sheet's thumbnails.
SWS_ACCURATE = "bicubic+accurate_rnd+full_chroma_int"
_TO_BT709 = f"out_color_matrix=bt709:out_range=tv:flags={SWS_ACCURATE}"
# Matrices the colorspace filter converts to BT.709 cheaply and exactly (fast=1: matrix only;
# the primaries of SD and HD video differ too little to matter for an animatic).
_FAST_MATRICES = frozenset({"bt470bg", "smpte170m"})


def samples(frames: int, fps: int) -> int:
    """Audio samples that belong to the first ``frames`` frames (rounded half up)."""
    return (2 * frames * SAMPLE_RATE + fps) // (2 * fps)


def temp_sibling(path: Path) -> Path:
    """A unique temp name in ``path``'s folder (same file system, so ``os.replace`` is atomic)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def _to_bt709(colour: Colour | None) -> tuple[str, str]:
    """Filters that bring a source to limited-range BT.709: (before scaling, scale options).

    BT.709 yuv420p needs nothing (and the scaler then keeps the values exactly). SD matrices,
    and untagged video (which ffmpeg reads as BT.601), go through the colorspace filter, which
    is cheaper and more exact than swscale. Anything else (RGB cards, full range, 4:4:4,
    10 bit) is converted by swscale at its accurate setting.
    """
    if colour is not None and colour.pix_fmt == "yuv420p" and not colour.full_range:
        if colour.matrix == "bt709":
            return "", ""
        if colour.matrix in _FAST_MATRICES or not colour.matrix:
            space = colour.matrix or "bt470bg"
            # The colorspace filter insists on known primaries and transfer; with fast=1 it
            # ignores them, so any valid pair will do.
            return (
                f"colorspace=ispace={space}:iprimaries=bt709:itrc=bt709:irange=tv:"
                "all=bt709:range=tv:fast=1,",
                "",
            )
    return "", f":{_TO_BT709}"


def fit_filter(w: int, h: int, fit: str, colour: Colour | None) -> str:
    """The filters that bring a source to ``w`` x ``h`` limited-range BT.709.

    ``fit`` is ``crop`` (fill the frame, cut the overflow equally from both sides) or
    ``pad`` (fit inside, black bars).
    """
    before, opts = _to_bt709(colour)
    if fit == "crop":
        # Fill the frame, then cut the overflow from both sides equally.
        return f"{before}scale={w}:{h}:force_original_aspect_ratio=increase{opts},crop={w}:{h}"
    return (
        f"{before}scale={w}:{h}:force_original_aspect_ratio=decrease:force_divisible_by=2"
        f"{opts},pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=black"
    )
