"""The preview backend: a free, offline animatic of each shot (the embedded default).

It honours the model's output geometry (fps, frame size, clip length) and the shot's inputs:
first frame, keyframes and last frame reached at their timestamps, the first reference image
when there is no frame, a camera move hinted by the prompt, and a caption with the shot id,
take and prompt. ``continues`` starts from the upstream clip's last frame; ``extends``
continues the upstream clip and, for models that return source + new footage, prepends the
source: by stream copy when it is a preview clip of the same geometry, so a chain of
extensions costs linear time in its footage. Same job, same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio

from storyboard.errors import MediaError
from storyboard.media import ffmpeg, mp4
from storyboard.media.animatic import AnimaticSpec, motion_from_prompt, render_animatic
from storyboard.providers.base import Failed, Job, Succeeded, TaskRef, TaskStatus

__all__ = ["PreviewProvider", "animatic_spec"]

_FFMPEG_TIMEOUT = 600.0


def animatic_spec(job: Job) -> AnimaticSpec:
    """The animatic that stands in for one take of a shot."""
    shot = job.shot
    stills: list[tuple[float, Path]] = []
    if shot.first_frame is not None and shot.first_frame.path is not None:
        stills.append((0.0, shot.first_frame.path))
    for key in shot.keyframes:
        if key.image.path is not None:
            stills.append((key.at, key.image.path))
    if shot.last_frame is not None and shot.last_frame.path is not None:
        stills.append((job.seconds, shot.last_frame.path))
    if not stills:
        # No frames: the first local reference image sets the scene.
        for ref in shot.refs:
            local = [m.path for m in ref.images if m.path is not None]
            if local:
                stills.append((0.0, local[0]))
                break
    caption = f"{shot.id} · take {job.take}/{shot.takes} · {job.spec.id}\n{shot.prompt}"
    return AnimaticSpec(
        width=job.width,
        height=job.height,
        fps=job.fps,
        seconds=job.seconds,
        stills=tuple(sorted(stills, key=lambda s: s[0])),
        motion=motion_from_prompt(shot.prompt),
        caption=caption,
        # The key decides the look, so takes differ and the same key gives the same bytes.
        seed=int(job.key[:8], 16),
        source_video=job.upstream,
    )


def _prepend_source(source: Path, new: Path, job: Job, out: Path) -> None:
    """Write ``source`` (fitted to the job's geometry) followed by ``new`` to ``out``."""
    w, h, fps = job.width, job.height, job.fps
    graph = (
        f"[0:v]scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},"
        f"fps={fps},setsar=1,format=yuv420p[a];[1:v]setsar=1,format=yuv420p[b];"
        "[a][b]concat=n=2:v=1:a=0[v]"
    )
    args = [
        "-i", str(source), "-i", str(new), "-filter_complex", graph, "-map", "[v]",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        "-threads", "2", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1",
        "-movflags", "+faststart", "-an", "-f", "mp4", str(out),
    ]  # fmt: skip
    try:
        ffmpeg.run(args, what=f"could not extend {source.name}", timeout=_FFMPEG_TIMEOUT)
    except MediaError as exc:
        raise MediaError(str(exc), shot=job.shot.id) from exc


def _append_by_copy(source: Path, new: Path, job: Job, out: Path) -> bool:
    """Write ``source`` followed by ``new`` to ``out`` by stream copy, if the two can be joined
    so: the same H.264 parameter sets, frame size and time scale (:func:`_video_entry`), as
    a preview clip of the same geometry has. ``False`` (nothing written) otherwise.

    The packets of both files are copied as they are (``-auto_convert 0``: no parameter sets
    inserted into the keyframes), so the clip holds the source's own bytes and ends with the
    new footage, as long as both together, and an extension costs only its new footage.
    """
    entry = _video_entry(source)
    if entry is None or entry != _video_entry(new):
        return False
    listing = out.with_name(out.name + ".concat.txt")
    lines = "".join(f"file {_quoted(path)}\n" for path in (source, new))
    listing.write_text(f"ffconcat version 1.0\n{lines}", encoding="utf-8")
    args = [
        "-auto_convert", "0", "-f", "concat", "-safe", "0", "-i", str(listing),
        "-map", "0:v:0", "-c", "copy", "-fflags", "+bitexact", "-map_metadata", "-1",
        "-movflags", "+faststart", "-f", "mp4", str(out),
    ]  # fmt: skip
    try:
        ffmpeg.run(args, what=f"could not extend {source.name}", timeout=_FFMPEG_TIMEOUT)
    except MediaError as exc:
        out.unlink(missing_ok=True)
        raise MediaError(str(exc), shot=job.shot.id) from exc
    finally:
        listing.unlink(missing_ok=True)
    return True


def _quoted(path: Path) -> str:
    """``path`` (absolute) as a quoted string of an ffconcat file."""
    return "'" + str(path.absolute()).replace("'", "'\\''") + "'"


def render_preview(job: Job, out: Path) -> None:
    """Render the animatic of ``job`` to ``out`` (blocking; run it in a worker thread).

    An extension whose model returns source + new footage gets the source followed by its
    new footage: by stream copy when the source is a preview clip of the job's geometry
    (the usual chain: one model family), so a chain of extensions costs what its new footage
    costs; otherwise the source is re-encoded to the job's geometry first.
    """
    spec = animatic_spec(job)
    if (
        job.upstream_mode == "extends"
        and job.upstream is not None
        and job.spec.extend_output == "source+new"
    ):
        part = out.with_name(out.name + ".new.mp4")
        try:
            render_animatic(spec, part)
            if not _append_by_copy(job.upstream, part, job, out):
                _prepend_source(job.upstream, part, job, out)
        finally:
            part.unlink(missing_ok=True)
    else:
        render_animatic(spec, out)


# -- which MP4s join by stream copy ------------------------------------------------------------


def _video_entry(path: Path) -> tuple[object, ...] | None:
    """What must be equal for another MP4's video to follow this one's by stream copy.

    The one video track's codec, its one sample description's ``avcC`` (the H.264 parameter
    sets, which carry the profile, level, frame size, frame rate and colour tags), its frame
    size and its time scale. ``None`` when the file is not such an MP4.
    """
    try:
        movie = mp4.read(path)
    except MediaError:
        return None
    videos = [track for track in movie.tracks if track.handler == "vide"]
    if len(videos) != 1 or videos[0].codec != "avc1" or videos[0].entries != 1:
        return None
    video = videos[0]
    return (video.codec, video.config, video.width, video.height, video.timescale)


class PreviewProvider:
    """Renders each job locally; a task is done as soon as ``submit`` returns."""

    name = "preview"
    idempotent_submit = True  # local and free: a repeat costs nothing

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._done: dict[str, Path | str] = {}

    async def submit(self, job: Job) -> TaskRef:
        # Named by this process too: two runs on one store (a project's, a batch beside a
        # render) may draw the same key at once and must not write each other's files.
        out = self.workdir / f"{job.key}.{os.getpid()}.mp4"
        try:
            await anyio.to_thread.run_sync(render_preview, job, out)
            self._done[job.key] = out
        except MediaError as exc:
            self._done[job.key] = str(exc)
        return TaskRef(provider=self.name, task_id=job.key, key=job.key)

    async def poll(self, task: TaskRef) -> TaskStatus:
        result = self._done.get(task.task_id)
        if isinstance(result, Path):
            return Succeeded(outputs=(str(result),))
        return Failed(message=str(result or "the preview task is unknown"))

    async def download(self, task: TaskRef, status: Succeeded, dest: Path) -> None:
        os.replace(status.outputs[0], dest)
        self._done.pop(task.task_id, None)

    async def aclose(self) -> None:
        for result in self._done.values():
            if isinstance(result, Path):
                result.unlink(missing_ok=True)
        self._done.clear()
