"""The emulator's media: encoding and probing the videos it serves, and the files it hosts.

The pure half encodes a real H.264 MP4 of a geometry (cached), re-muxes it with a stamp and
probes files with ffmpeg. :class:`MediaHost` is the CDN (``/files``, outputs and uploads,
with ranges and expiry) and the bucket (``/upload``, presigned PUT targets); the core
inherits it and keeps its state.
"""

from __future__ import annotations

import hashlib
import math
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import quote, unquote, urlsplit

from storyboard.testing.emulator.records import (
    EmulatorResponse,
    Provider,
    VideoProbe,
    VideoSpec,
    _Request,
)

FILES_PREFIX = "/files/"
UPLOAD_PREFIX = "/upload/"

_ENCODE_CACHE: dict[VideoSpec, bytes] = {}
_ENCODE_LOCK = threading.Lock()


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return cast(str, imageio_ffmpeg.get_ffmpeg_exe())


def _run_ffmpeg(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [_ffmpeg(), "-hide_banner", "-nostdin", *args],
        capture_output=True,
        check=False,
        timeout=120,
    )


def scaled_geometry(
    spec: VideoSpec, scale: float, max_seconds: float | None, min_short_side: int = 36
) -> VideoSpec:
    """The geometry of the file served for a real output geometry.

    Width and height are multiplied by ``scale``, raised so that the short side is at least
    ``min_short_side`` (never above the real size) and rounded to even numbers (H.264 with
    yuv420p needs that). The fps is kept; frames are capped at ``max_seconds * fps``.
    """
    short = min(spec.width, spec.height)
    factor = min(1.0, max(scale, min_short_side / short))
    width = max(2, round(spec.width * factor / 2) * 2)
    height = max(2, round(spec.height * factor / 2) * 2)
    frames = spec.frames
    if max_seconds is not None:
        frames = max(1, min(frames, round(max_seconds * spec.fps)))
    return VideoSpec(width, height, spec.fps, frames, spec.audio)


def encode_video(spec: VideoSpec) -> bytes:
    """An MP4 (H.264, yuv420p, AAC sine tone if ``spec.audio``) of exactly this geometry.

    Cached per geometry for the life of the process: repeated tasks never re-encode.
    """
    with _ENCODE_LOCK:
        cached = _ENCODE_CACHE.get(spec)
        if cached is not None:
            return cached
        with tempfile.TemporaryDirectory(prefix="sb-emu-") as tmp:
            out = Path(tmp) / "out.mp4"
            args = [
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=size={spec.width}x{spec.height}:rate={spec.fps}",
            ]
            if spec.audio:
                seconds = f"{spec.seconds:.6f}"
                args += [
                    "-f",
                    "lavfi",
                    "-i",
                    f"sine=frequency=440:sample_rate=44100:duration={seconds}",
                ]
            args += ["-frames:v", str(spec.frames), "-c:v", "libx264", "-preset", "ultrafast"]
            args += ["-crf", "35", "-pix_fmt", "yuv420p"]
            if spec.audio:
                args += ["-c:a", "aac", "-b:a", "32k"]
            args += ["-movflags", "+faststart", "-y", str(out)]
            done = _run_ffmpeg(args)
            if done.returncode != 0:
                raise RuntimeError(f"ffmpeg failed to encode {spec}: {done.stderr.decode()[-800:]}")
            data = out.read_bytes()
        _ENCODE_CACHE[spec] = data
        return data


def _stamp(data: bytes, comment: str) -> bytes:
    """Re-mux (stream copy, no re-encode) with a ``comment`` tag so each task's bytes differ."""
    with tempfile.TemporaryDirectory(prefix="sb-emu-") as tmp:
        src, out = Path(tmp) / "in.mp4", Path(tmp) / "out.mp4"
        src.write_bytes(data)
        done = _run_ffmpeg(
            [
                *("-i", str(src), "-map", "0", "-c", "copy"),
                *("-metadata", f"comment={comment}", "-movflags", "+faststart", "-y", str(out)),
            ]
        )
        if done.returncode != 0:
            raise RuntimeError(f"ffmpeg failed to stamp a file: {done.stderr.decode()[-800:]}")
        return out.read_bytes()


_DURATION_RE = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO_RE = re.compile(r"Stream #\S+.*?: Video: .*?, (\d{2,5})x(\d{2,5})[, \[]")
_FPS_RE = re.compile(r"([\d.]+) fps")
_FRAME_RE = re.compile(r"frame=\s*(\d+)")


def probe_video(data: bytes | Path, *, count_frames: bool = False) -> VideoProbe | None:
    """Read size, fps, duration and audio presence with ``ffmpeg -i``; ``None`` if not video.

    Args:
        data: File bytes or a path.
        count_frames: Also count the video frames (demux with stream copy; cheap).
    """
    with tempfile.TemporaryDirectory(prefix="sb-emu-") as tmp:
        if isinstance(data, Path):
            path = data
        else:
            path = Path(tmp) / "probe.bin"
            path.write_bytes(data)
        stderr = _run_ffmpeg(["-i", str(path)]).stderr.decode(errors="replace")
        video = _VIDEO_RE.search(stderr)
        duration = _DURATION_RE.search(stderr)
        if video is None or duration is None:
            return None
        hours, minutes, seconds = duration.groups()
        video_line = stderr[video.start() : stderr.find("\n", video.start())]
        fps = _FPS_RE.search(video_line)
        frames: int | None = None
        if count_frames:
            counted = _run_ffmpeg(
                ["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"]
            )
            found = _FRAME_RE.findall(counted.stderr.decode(errors="replace"))
            frames = int(found[-1]) if found else None
        return VideoProbe(
            width=int(video.group(1)),
            height=int(video.group(2)),
            fps=float(fps.group(1)) if fps else 0.0,
            duration=int(hours) * 3600 + int(minutes) * 60 + float(seconds),
            has_audio=": Audio: " in stderr,
            frames=frames,
        )


def probe_duration(data: bytes | Path) -> float | None:
    """The length in seconds ffmpeg reads from any media file (audio too); ``None`` if none."""
    with tempfile.TemporaryDirectory(prefix="sb-emu-") as tmp:
        path = data if isinstance(data, Path) else Path(tmp) / "probe.bin"
        if not isinstance(data, Path):
            path.write_bytes(data)
        stderr = _run_ffmpeg(["-i", str(path)]).stderr.decode(errors="replace")
    found = _DURATION_RE.search(stderr)
    if found is None:
        return None
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _image_size(data: bytes) -> tuple[int, int] | None:
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return (int(image.width), int(image.height))
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def _nearest(size: tuple[int, int], candidates: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """The candidate whose aspect ratio is closest to ``size``'s (log distance)."""
    ratio = math.log(size[0] / size[1])
    return min(candidates, key=lambda c: abs(math.log(c[0] / c[1]) - ratio))


@dataclass
class _StoredFile:
    path: str
    provider: Provider
    content_type: str
    expires_at: float  # wall clock
    data: bytes | None = None  # None: generated lazily (outputs) or not uploaded yet
    spec: VideoSpec | None = None  # real geometry of a generated output
    stamp: str | None = None
    dims: tuple[int, int] | None = None  # real size, once known
    seconds: float | None = None  # real length, once known
    probed: bool = False


@dataclass
class _Ticket:
    token: str
    filename: str
    size: int
    content_type: str
    signature: str
    expires_at: float  # wall clock
    file_path: str


def _s3_error(status: int, code: str, message: str) -> EmulatorResponse:
    # Storage and CDN errors look like S3's XML, not like either provider's JSON.
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return EmulatorResponse(status, {"Content-Type": "application/xml"}, body.encode())


class MediaHost:
    """The CDN and the bucket: hosted files, upload tickets, serving and probing them.

    The state is set by the core's constructor; the server changes ``base_url``.
    """

    base_url: str
    wall_clock: Callable[[], float]
    scale: float
    max_seconds: float | None
    min_short_side: int
    stamp_outputs: bool
    reject_authorization_on_upload: bool
    _files: dict[str, _StoredFile]
    _tickets: dict[str, _Ticket]
    _generated_by_digest: dict[str, VideoSpec]

    def _file_spec(self, spec: VideoSpec) -> VideoSpec:
        return scaled_geometry(spec, self.scale, self.max_seconds, self.min_short_side)

    def _url(self, path: str) -> str:
        head, _, name = path.rpartition("/")
        return f"{self.base_url}{head}/{quote(name)}"

    def _own_path(self, url: object) -> str | None:
        """The file path of a URL that points at this emulator's CDN, else ``None``."""
        if not isinstance(url, str):
            return None
        parts = urlsplit(url)
        if parts.netloc != urlsplit(self.base_url).netloc or not parts.path.startswith(
            FILES_PREFIX
        ):
            return None
        return unquote(parts.path)

    def _lookup(self, url: object) -> _StoredFile | None:
        path = self._own_path(url)
        stored = self._files.get(path) if path else None
        if stored is None or self.wall_clock() > stored.expires_at:
            return None
        if stored.data is None and stored.spec is None:
            return None  # a ticket whose PUT never arrived
        return stored

    def _materialise(self, stored: _StoredFile) -> bytes:
        if stored.data is None:
            if stored.spec is None:
                raise KeyError(stored.path)
            data = encode_video(self._file_spec(stored.spec))
            if self.stamp_outputs and stored.stamp:
                data = _stamp(data, stored.stamp)
            stored.data = data
            self._generated_by_digest[hashlib.sha256(data).hexdigest()] = stored.spec
        return stored.data

    def _probe_stored(self, stored: _StoredFile) -> None:
        if stored.probed or stored.dims is not None or stored.data is None:
            return
        stored.probed = True
        spec = self._generated_by_digest.get(hashlib.sha256(stored.data).hexdigest())
        if spec is not None:  # a re-upload of one of our outputs: we know its real geometry
            stored.dims, stored.seconds = (spec.width, spec.height), spec.seconds
            return
        if stored.content_type.startswith("image/"):
            stored.dims = _image_size(stored.data)
            return
        probe = probe_video(stored.data)
        if probe is not None:
            stored.dims, stored.seconds = (probe.width, probe.height), probe.duration
        else:  # audio (or anything else ffmpeg can time)
            stored.seconds = probe_duration(stored.data)

    def _media_dims(self, url: object) -> tuple[int, int] | None:
        stored = self._lookup(url)
        if stored is None:
            return None
        self._probe_stored(stored)
        return stored.dims

    def _media_seconds(self, url: object) -> float | None:
        stored = self._lookup(url)
        if stored is None:
            return None
        self._probe_stored(stored)
        return stored.seconds

    def _serve_file(self, request: _Request) -> EmulatorResponse:
        if request.method not in ("GET", "HEAD"):
            return _s3_error(405, "MethodNotAllowed", "The specified method is not allowed")
        stored = self._files.get(request.path)
        if stored is None or (stored.data is None and stored.spec is None):
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if self.wall_clock() > stored.expires_at:
            return _s3_error(403, "AccessDenied", "Request has expired")
        data = self._materialise(stored)
        headers = {
            "Content-Type": stored.content_type,
            "Accept-Ranges": "bytes",
            "ETag": f'"{hashlib.md5(data).hexdigest()}"',  # S3 ETags are MD5 digests
        }
        status, start, end = 200, 0, len(data)
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("range", "").strip())
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(len(data), int(match.group(2)) + 1) if match.group(2) else len(data)
            else:
                start = max(0, len(data) - int(match.group(2)))
            if start >= len(data) or start >= end:
                return EmulatorResponse(416, {"Content-Range": f"bytes */{len(data)}"}, b"")
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        headers["Content-Length"] = str(end - start)
        body = b"" if request.method == "HEAD" else data[start:end]
        return EmulatorResponse(status, headers, body)

    def _accept_upload(self, request: _Request) -> EmulatorResponse:
        if request.method != "PUT":
            return _s3_error(405, "MethodNotAllowed", "The specified method is not allowed")
        if self.reject_authorization_on_upload and "authorization" in request.headers:
            return _s3_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be specified",
            )
        token = request.path[len(UPLOAD_PREFIX) :].split("/", 1)[0]
        ticket = self._tickets.get(token)
        if ticket is None or request.path != f"{UPLOAD_PREFIX}{token}/{ticket.filename}":
            return _s3_error(404, "NoSuchUpload", "The specified upload does not exist.")
        if request.query.get("X-Amz-Signature") != ticket.signature:
            return _s3_error(
                403, "SignatureDoesNotMatch", "The request signature we calculated does not match"
            )
        if self.wall_clock() > ticket.expires_at:
            return _s3_error(403, "AccessDenied", "Request has expired")
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            return _s3_error(
                411, "MissingContentLength", "You must provide the Content-Length HTTP header."
            )
        if request.headers.get("content-type", "") != ticket.content_type:
            return _s3_error(
                403,
                "SignatureDoesNotMatch",
                f"Content-Type must be the signed value {ticket.content_type!r}",
            )
        if len(request.body) != ticket.size:
            return _s3_error(
                400,
                "IncompleteBody",
                f"expected {ticket.size} bytes as ticketed, got {len(request.body)}",
            )
        stored = self._files[ticket.file_path]
        stored.data, stored.dims, stored.seconds, stored.probed = request.body, None, None, False
        etag = hashlib.md5(request.body).hexdigest()  # S3 ETags are MD5 digests
        return EmulatorResponse(200, {"ETag": f'"{etag}"'}, b"")
