"""The pictures the cut encodes: pieces, and seams (each transition, by name, is a filter
graph of ffmpeg's own).

A :class:`Window` is frames of a clip (or of a drawn card) as the cut shows them: decoded
from the source at its trim offset and brought to the cut's size, rate and colours
(:func:`window`). A piece is one window encoded (:func:`encode`): a card, a clip that does
not conform, the partial GOP before a copied clip's first IDR picture.

A seam is one small clip, ``frames`` long, in which the end of segment A turns into the
start of segment B. One ffmpeg process makes it: it decodes both windows from the sources
(the original clips at their trim offsets, or the drawn card, brought to the cut's size and
colours by the same filters as the pieces: :class:`Window`), composites them with the
transition's filters and encodes the result with the seams' encoder settings
(:func:`storyboard.media.encoding.seam_codec_args`), picture only. The sound of the
transition is mixed by :mod:`storyboard.media.audiotrack`, in the same process when it asks
for nothing but the two clips (``sound``).

:data:`TRANSITIONS` maps every transition but ``cut`` (which needs no seam) to the filters
from ``[a]`` and ``[b]`` (both ``frames`` long) to ``[v]``: adding one is adding an entry
here, its audio fades in the cutter, and its name to the catalogue.

* ``crossfade``: B's weight rises from 0 (the first frame is A) by ``1/frames`` a frame
  (A overlaid on B, fading out); the audio crossfades.
* ``fade``: through black within the overlap: the first half fades A's tail out, the second
  half fades B's head in (the audio dips to silence the same way).
* ``wipe-*``: an edge moves in that direction, revealing B from the side it leaves.
* ``slide-*``: both pictures move in that direction, B entering from the opposite edge.

Directions are ffmpeg's ``xfade`` ones (``wipeleft``, ``slideup``, ...). Failures raise
:class:`~storyboard.errors.MediaError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storyboard.media import ffmpeg
from storyboard.media.audiotrack import Command
from storyboard.media.encoding import (
    COLOUR,
    MUX_ARGS,
    fit_filter,
    seam_codec_args,
    temp_sibling,
    timeout,
    video_codec_args,
)
from storyboard.media.probe import Colour

__all__ = ["TRANSITIONS", "Seam", "Window", "encode", "render_seam", "window"]

# Filter graphs this small run fastest on one thread (ffmpeg starts one per core otherwise);
# parallelism comes from running several processes at once.
_ONE_THREAD = ("-filter_complex_threads", "1")

#: ``(frames, fps) -> filters``: from ``[a]`` (``frames`` long) and ``[b]`` (at least as
#: long) to ``[v]``: the transition, then the rest of ``[b]``.
Composite = Callable[[int, int], str]


@dataclass(frozen=True)
class Window:
    """Frames of a clip or card as the cut shows them: the ffmpeg input arguments, and the
    filters from that input's picture to exactly those frames, at the cut's size, rate
    and colours (what a piece of the same frames is encoded from)."""

    inputs: tuple[str, ...]
    chain: str
    frames: int
    decoded: int  # frames decoded to get them (the deadline allows for it)


def window(
    source: Path,
    start: float,
    frame: int | None,
    colour: Colour | None,
    cut: tuple[int, int, int, str],
    first: int,
    count: int,
    *,
    keyframe: bool = False,
) -> Window:
    """Frames ``first .. first + count - 1`` of a segment of ``source`` (a clip, or a card's
    PNG when ``colour`` is None) that starts at ``start`` seconds, for a cut of
    ``(width, height, fps, fit)``.

    ``frame``: the clip's frame (at the cut's rate) where the window starts, when the clip's
    frames are exactly that rate (then ffmpeg seeks straight to it); otherwise the segment is
    decoded from ``start`` and its frames counted after the rate conversion. ``keyframe``:
    that frame is an IDR picture and frames are decoded in the order they are shown, so
    decoding starts at it (not at the IDR picture before it).
    """
    width, height, fps, fit_mode = cut
    end = first + count
    last = f"tpad=stop=-1:stop_mode=clone,trim=start_frame={first}:end_frame={end}"
    fit = fit_filter(width, height, fit_mode, colour)
    if colour is None:  # a card: one picture, drawn at the cut's size in RGB
        inputs = ["-loop", "1", "-framerate", str(fps), "-t", f"{end / fps + 1:.6f}"]
        chain = f"fps={fps},{fit},{COLOUR},{last},setpts=PTS-STARTPTS"
        return Window((*inputs, "-i", str(source)), chain, count, end)
    inputs = ["-threads", "1"]
    decoded, head = end, ""
    if frame is not None and keyframe and frame > 0:
        # Seeking lands on the last keyframe at or before the position; half a frame past
        # this one, it is this one. Nothing is dropped while seeking (-noaccurate_seek), so
        # the window's first frame comes out half a frame before zero, and anything an
        # unusual demuxer hands over before it (a frame or more earlier) is trimmed.
        inputs += ["-noaccurate_seek", "-ss", f"{(frame + 0.5) / fps:.6f}"]
        head = f"trim=start={-1 / fps:.6f},setpts=PTS-STARTPTS,"
        last = f"tpad=stop=-1:stop_mode=clone,trim=end_frame={count}"
        decoded = count
    elif frame is not None:
        # Seek half a frame before the window's first frame: input seeking drops what lies
        # before the position, so that frame is the first one kept, exactly.
        if frame > 0:
            inputs += ["-ss", f"{(frame - 0.5) / fps:.6f}"]
        last = f"tpad=stop=-1:stop_mode=clone,trim=end_frame={count}"
        decoded = count
    elif start > 0:
        inputs += ["-ss", f"{start:.6f}"]
    # A little more than needed; tpad/trim make the frame count exact.
    inputs += ["-t", f"{(decoded + 2) / fps:.6f}", "-i", str(source)]
    chain = f"{head}fps={fps},{fit},{COLOUR},{last},setpts=PTS-STARTPTS"
    return Window(tuple(inputs), chain, count, decoded)


def encode(frames: Window, path: Path, fps: int, what: str) -> None:
    """Encode a window into a piece at ``path``, atomically.

    Raises:
        MediaError: the source cannot be decoded, or ffmpeg failed or ran past its deadline.
    """
    tmp = temp_sibling(path)
    args = [*frames.inputs, *_ONE_THREAD, "-filter_complex", f"[0:v:0]{frames.chain}[v]"]
    args += ["-map", "[v]"]
    args += ["-frames:v", str(frames.frames), *video_codec_args(fps), *MUX_ARGS]
    args += ["-f", "mov", str(tmp)]
    try:
        ffmpeg.run(args, what=what, timeout=timeout(frames.decoded / fps))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class Seam:
    """One transition to render: ``frames`` long, from window ``a`` (the end of segment A,
    ``frames`` long) into window ``b`` (the start of segment B). When ``b`` is longer, the
    seam clip goes on with the rest of it: the frames of B up to where its copied part
    starts, encoded in the same process."""

    transition: str
    frames: int
    a: Window
    b: Window
    path: Path  # where the seam clip goes


def _xfade(kind: str) -> Composite:
    """ffmpeg's ``xfade`` transition ``kind``."""

    def composite(frames: int, fps: int) -> str:
        # offset 0 and the whole window as the duration: frame i is B at weight i/frames;
        # after the transition xfade passes the rest of B on.
        return f"[a][b]xfade=transition={kind}:duration={frames / fps:.6f}:offset=0[v]"

    return composite


def _crossfade(frames: int, fps: int) -> str:
    """A laid over B, its opacity falling from whole by ``1/frames`` a frame, so that frame
    ``i`` is B at weight ``i/frames``; then B alone.

    What ``xfade``'s ``fade`` draws, at about a quarter of its cost (``overlay`` blends 8-bit
    4:2:0 with integer SIMD, ``xfade`` per pixel in floats: 8 ms a 720p frame), and closer:
    ``xfade`` converts the chroma and back (0.7 levels off on average), ``overlay`` leaves it.
    """
    return (
        f"[a]format=yuva420p,fade=t=out:s=0:n={frames}:alpha=1[a1];"
        "[b][a1]overlay=eof_action=pass:format=yuv420[v]"
    )


def _fade(frames: int, fps: int) -> str:
    """A's first half fades out to black, then B's second half fades in from black."""
    half = frames // 2
    tail = f"[b]trim=start_frame={half},setpts=PTS-STARTPTS,fade=t=in:s=0:n={frames - half}"
    if half == 0:
        return f"[a]nullsink;{tail}[v]"
    return (
        f"[a]trim=end_frame={half},fade=t=out:s=0:n={half}[a1];{tail}[b1];"
        "[a1][b1]concat=n=2:v=1:a=0[v]"
    )


_DIRECTIONS = ("left", "right", "up", "down")

#: Every transition that makes a seam (all but ``cut``), by name.
TRANSITIONS: dict[str, Composite] = {
    "crossfade": _crossfade,
    "fade": _fade,
    **{f"wipe-{d}": _xfade(f"wipe{d}") for d in _DIRECTIONS},
    **{f"slide-{d}": _xfade(f"slide{d}") for d in _DIRECTIONS},
}


def render_seam(seam: Seam, fps: int, sound: Command | None = None) -> None:
    """Composite and encode a seam in one ffmpeg process; written to a temp file and renamed
    to ``seam.path``. ``sound``: a run of the cut's sound the same process encodes too (into
    its own temp file, which the caller renames).

    Raises:
        MediaError: a source cannot be decoded, or ffmpeg failed or ran past its deadline.
    """
    k = seam.frames
    graph = (
        f"[0:v:0]{seam.a.chain}[a];[1:v:0]{seam.b.chain}[b];{TRANSITIONS[seam.transition](k, fps)}"
    )
    tmp = temp_sibling(seam.path)
    args = [*seam.a.inputs, *seam.b.inputs]
    if sound is not None:
        args += sound.inputs  # numbered from 2 on
        graph += f";{sound.graph}"
    args += [*_ONE_THREAD, "-filter_complex", graph, "-map", "[v]", "-frames:v", str(seam.b.frames)]
    args += [*seam_codec_args(fps), *MUX_ARGS, "-f", "mov", str(tmp)]
    if sound is not None:
        args += sound.outputs
    decoded = seam.a.decoded + seam.b.decoded
    deadline = timeout(decoded / fps) + (sound.seconds / 4 if sound is not None else 0.0)
    try:
        ffmpeg.run(args, what=f"{seam.transition} seam of {k} frames", timeout=deadline)
        tmp.replace(seam.path)
    finally:
        tmp.unlink(missing_ok=True)
