"""Seams of the cut: each transition, by name, is a picture composite and an audio mix.

A seam is one small clip, ``frames`` long, made from the tail of clip A and the head of clip
B (pieces the cutter has already normalised). moviepy composites the picture and the frames
are piped into ffmpeg with the same encoder settings as the pieces
(:mod:`storyboard.media.encoding`), while ffmpeg mixes the audio of the two windows.

:data:`TRANSITIONS` maps every transition but ``cut`` (which needs no seam) to a
:class:`Transition`: adding one is adding an entry here and its name to the catalogue.

* ``crossfade``: B's opacity rises from 0 to 1 over A; the audio crossfades.
* ``fade``: through black within the overlap: the first half fades A's tail out, the second
  half fades B's head in (the audio dips to silence the same way).
* ``wipe-*``: an edge moves in that direction, revealing B from the side it leaves.
* ``slide-*``: both pictures move in that direction, B entering from the opposite edge.

Directions follow ffmpeg's ``xfade``. moviepy and numpy are imported only when a seam is
rendered. Failures raise :class:`~storyboard.errors.MediaError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storyboard.errors import MediaError
from storyboard.media import ffmpeg
from storyboard.media.encoding import (
    AUDIO_PCM_ARGS,
    COLOUR,
    MUX_ARGS,
    SWS_ACCURATE,
    samples,
    temp_sibling,
    timeout,
    video_codec_args,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["TRANSITIONS", "Seam", "Transition", "render_seam"]

#: ``(a, b, size, frames) -> composite``: the moviepy picture of a seam; ``a`` and ``b`` are
#: both ``frames`` long.
Composite = Callable[[Any, Any, tuple[int, int], int], Any]
#: ``(frames, fps) -> filters``: from A's audio ``[1:a:0]`` and B's ``[2:a:0]`` to ``[x]``
#: and ``[y]``, which are then mixed.
AudioMix = Callable[[int, int], str]


@dataclass(frozen=True)
class Transition:
    """How one kind of transition draws its picture and mixes its sound."""

    picture: Composite
    audio: AudioMix


@dataclass(frozen=True)
class Seam:
    """One transition to render: ``frames`` long, from ``tail`` (of A) and ``head`` (of B)."""

    transition: str
    frames: int
    tail: Path
    head: Path
    path: Path  # where the seam clip goes


# --------------------------------------------------------------------------------------------
# audio


def _crossfade_audio(frames: int, fps: int) -> str:
    n = samples(frames, fps)
    return f"[1:a:0]afade=t=out:ss=0:ns={n}[x];[2:a:0]afade=t=in:ss=0:ns={n}[y];"


def _dip_audio(frames: int, fps: int) -> str:
    """The audio dips to silence in the middle, like the picture dips to black."""
    n, half = samples(frames, fps), samples(frames // 2, fps)
    return (
        f"[1:a:0]afade=t=out:ss=0:ns={max(half, 1)}[x];"
        f"[2:a:0]afade=t=in:ss={half}:ns={max(n - half, 1)}[y];"
    )


# --------------------------------------------------------------------------------------------
# pictures


def _crossfade(a: Any, b: Any, size: tuple[int, int], frames: int) -> Any:
    from moviepy import CompositeVideoClip, vfx

    # A is the opaque background; B's mask rises from 0 to 1.
    seconds = frames / a.fps
    return CompositeVideoClip(
        [a, b.with_effects([vfx.CrossFadeIn(seconds)])], size=size, use_bgclip=True
    )


def _fade(a: Any, b: Any, size: tuple[int, int], frames: int) -> Any:
    from moviepy import CompositeVideoClip, vfx

    fps: float = a.fps
    seconds = frames / fps
    half = (frames // 2) / fps  # the same split as the audio's (_dip_audio)
    parts = []
    if half > 0:
        parts.append(a.subclipped(0, half).with_effects([vfx.FadeOut(half)]))
    parts.append(b.subclipped(half).with_effects([vfx.FadeIn(seconds - half)]).with_start(half))
    return CompositeVideoClip(parts, size=size, bg_color=(0, 0, 0))


def _travel(extent: int, seconds: float) -> Callable[[float], int]:
    """Pixels travelled at time ``t``: 0 at the first frame of the seam, ``extent`` at the end."""

    def progress(t: float) -> int:
        return round(extent * min(max(t / seconds, 0.0), 1.0))

    return progress


def _wipe(direction: str) -> Composite:
    def wipe(a: Any, b: Any, size: tuple[int, int], frames: int) -> Any:
        import numpy as np
        from moviepy import CompositeVideoClip, VideoClip

        width, height = size
        seconds = frames / a.fps
        horizontal = direction in ("left", "right")
        progress = _travel(width if horizontal else height, seconds)

        def mask_frame(t: float) -> npt.NDArray[np.float64]:
            mask = np.zeros((height, width), dtype=np.float64)
            edge = progress(t)
            # B shows on the side the edge moves away from.
            if direction == "left":
                mask[:, width - edge :] = 1.0
            elif direction == "right":
                mask[:, :edge] = 1.0
            elif direction == "up":
                mask[height - edge :, :] = 1.0
            else:
                mask[:edge, :] = 1.0
            return mask

        mask = VideoClip(frame_function=mask_frame, is_mask=True, duration=seconds)
        return CompositeVideoClip([a, b.with_mask(mask)], size=size, use_bgclip=True)

    return wipe


def _slide(direction: str) -> Composite:
    def slide(a: Any, b: Any, size: tuple[int, int], frames: int) -> Any:
        from moviepy import CompositeVideoClip

        width, height = size
        horizontal = direction in ("left", "right")
        extent = width if horizontal else height
        progress = _travel(extent, frames / a.fps)
        sign = -1 if direction in ("left", "up") else 1

        def place(offset: int) -> Callable[[float], tuple[int, int]]:
            def position(t: float) -> tuple[int, int]:
                shift = sign * progress(t) + offset
                return (shift, 0) if horizontal else (0, shift)

            return position

        # A leaves in the direction of travel; B follows it in from the opposite edge.
        return CompositeVideoClip(
            [a.with_position(place(0)), b.with_position(place(-sign * extent))],
            size=size,
            bg_color=(0, 0, 0),
        )

    return slide


_DIRECTIONS = ("left", "right", "up", "down")

#: Every transition that makes a seam (all but ``cut``), by name.
TRANSITIONS: dict[str, Transition] = {
    "crossfade": Transition(_crossfade, _crossfade_audio),
    "fade": Transition(_fade, _dip_audio),
    **{f"wipe-{d}": Transition(_wipe(d), _crossfade_audio) for d in _DIRECTIONS},
    **{f"slide-{d}": Transition(_slide(d), _crossfade_audio) for d in _DIRECTIONS},
}


# --------------------------------------------------------------------------------------------
# rendering


def _close_file_clip(clip: Any) -> None:
    """Close a moviepy ``VideoFileClip`` and really release its ffmpeg reader.

    moviepy 2.2.1's ``FFMPEG_VideoReader.close()`` closes the reader's pipes only when its
    ffmpeg is still running; after a short piece has been read to the end it has exited,
    and the pipes would stay open until garbage collection.
    """
    proc = getattr(getattr(clip, "reader", None), "proc", None)
    clip.close()
    if proc is not None:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def render_seam(seam: Seam, width: int, height: int, fps: int) -> None:
    """Composite a seam with moviepy and encode it like the pieces, audio mixed by ffmpeg.

    Written to a temp file and renamed to ``seam.path``.

    Raises:
        MediaError: moviepy cannot read the pieces, or ffmpeg failed or ran past its
            deadline (which also stops moviepy's own readers).
    """
    import numpy as np
    from moviepy import VideoFileClip

    transition = TRANSITIONS[seam.transition]
    k = seam.frames
    seconds = k / fps
    n = samples(k, fps)
    graph = (
        f"[0:v:0]scale=out_color_matrix=bt709:out_range=tv,{COLOUR}[v];"
        f"{transition.audio(k, fps)}"
        f"[x][y]amix=inputs=2:duration=longest:normalize=0,"
        f"aformat=sample_fmts=s16:channel_layouts=stereo,apad,atrim=end_sample={n}[a]"
    )
    tmp = temp_sibling(seam.path)
    args = [
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
        "-framerate", str(fps), "-i", "pipe:0",
        "-i", str(seam.tail), "-i", str(seam.head),
        "-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-frames:v", str(k),
        *video_codec_args(fps), *AUDIO_PCM_ARGS, *MUX_ARGS, "-f", "mov", str(tmp),
    ]  # fmt: skip
    what = f"{seam.transition} seam of {k} frames"
    a = b = composite = None

    def stop_readers() -> None:
        # The deadline also covers moviepy's own ffmpeg readers: a hung reader would
        # otherwise block get_frame() for ever.
        for clip in (a, b):
            reader = getattr(getattr(clip, "reader", None), "proc", None)
            if reader is not None:
                with contextlib.suppress(OSError):
                    reader.kill()

    try:
        # Compositing in Python is slower than encoding: the deadline allows for it.
        deadline = timeout(seconds) + 10.0 * seconds
        with ffmpeg.Writer(args, what=what, timeout=deadline, on_timeout=stop_readers) as writer:
            try:
                try:
                    a = VideoFileClip(str(seam.tail), audio=False, resize_algorithm=SWS_ACCURATE)
                    b = VideoFileClip(str(seam.head), audio=False, resize_algorithm=SWS_ACCURATE)
                    composite = transition.picture(a, b, (width, height), k)
                except (OSError, ValueError) as exc:
                    raise MediaError(f"{what}: moviepy cannot read the pieces: {exc}") from exc
                for i in range(k):
                    frame = np.asarray(composite.get_frame(i / fps))
                    if frame.shape != (height, width, 3):
                        raise MediaError(f"{what}: moviepy made a frame of shape {frame.shape}")
                    if not writer.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes()):
                        break  # ffmpeg died (or was killed): leaving the block says why
            finally:
                if composite is not None:
                    composite.close()
                for clip in (b, a):
                    if clip is not None:
                        _close_file_clip(clip)
        tmp.replace(seam.path)
    finally:
        tmp.unlink(missing_ok=True)
