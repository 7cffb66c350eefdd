"""How long a local audio or video input lasts, read cheaply from its header (no decoding).

``validate`` checks the seconds limits the providers state (SkyReels V4: a reference video
lasts 2-30 s, driving audio 3-30 s) before anything is spent, so it needs a file's length
without importing moviepy or numpy and without running ffmpeg. The container header has it;
`mutagen <https://mutagen.readthedocs.io>`_ (pure Python) reads it from a few KB of the file:

* MP4 / MOV: the movie header's duration over its timescale (``mvhd``);
* WAV: the data chunk's size over the byte rate;
* MP3: the Xing/Info or VBRI header, else the first frame's bitrate over the file size.

Lengths are memoised by the file's content digest: in this process, and in ``media.json``
beside the store's digest memo when the caller passes one (the digest itself is memoised by
size and mtime there, so an unchanged file is not read again at all). A file whose length
cannot be read raises :class:`UnreadableMedia`; ``validate`` reports it at the file's line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from storyboard.errors import StoryboardError
from storyboard.hashing import DigestMemo, atomic_write, canonical_json

__all__ = ["READABLE", "DurationMemo", "UnreadableMedia", "read_seconds"]

# Extensions whose length this module reads, and the mutagen class for each.
READABLE: dict[str, str] = {".mp4": "mp4", ".mov": "mp4", ".wav": "wave", ".mp3": "mp3"}


class UnreadableMedia(StoryboardError):
    """The length of a media file cannot be read from its header.

    Attributes:
        path: the file.
        reason: what went wrong, in a few words (the parser's own message).
    """

    exit_code = 2

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot read the length of {path.name}: {reason}")
        self.path = path
        self.reason = reason

    def hint(self) -> str | None:
        return (
            f"check that it is a valid {self.path.suffix.lstrip('.').upper()} file, or "
            f"re-encode it: ffmpeg -i {self.path.name} fixed{self.path.suffix.lower()}"
        )


def read_seconds(path: Path) -> float:
    """The length in seconds of an MP4/MOV, WAV or MP3 file, from its header.

    Raises:
        UnreadableMedia: the extension is not one of :data:`READABLE`, the file cannot be
            opened, or its header does not parse or gives no positive, finite length.
    """
    kind = READABLE.get(path.suffix.lower())
    if kind is None:
        raise UnreadableMedia(path, f"storyboard reads the length of {_names()} files only")
    try:
        seconds = _parse(kind, path)
    except OSError as exc:
        raise UnreadableMedia(path, exc.strerror or str(exc)) from exc
    except Exception as exc:  # mutagen parses untrusted bytes: any failure means "unreadable"
        raise UnreadableMedia(path, str(exc) or type(exc).__name__) from exc
    if not math.isfinite(seconds) or seconds <= 0:
        raise UnreadableMedia(path, "its header gives no length")
    return seconds


def _parse(kind: str, path: Path) -> float:
    # Imported here: only storyboards with local audio/video inputs pay for mutagen.
    parser: Callable[[Path], Any]
    if kind == "mp4":
        from mutagen.mp4 import MP4 as parser
    elif kind == "wave":
        from mutagen.wave import WAVE as parser
    else:
        from mutagen.mp3 import MP3 as parser
    info: Any = parser(path).info  # mutagen's stream info: ``length`` in seconds
    return float(info.length)


def _names() -> str:
    return "/".join(sorted({e.lstrip(".").upper() for e in READABLE}))


# Lengths read from headers in this process, by content digest (shared by every memo).
_SECONDS: dict[str, float] = {}
# Digests of files by (path, size, mtime), when the caller has no persisted memo.
_DIGESTS = DigestMemo(None)


class DurationMemo:
    """Media lengths memoised by content digest (in-process, and persisted if ``path``).

    Args:
        path: a JSON file remembering ``{digest: seconds}`` across runs, or ``None``.
        digests: the memo that gives a file's digest (by size and mtime); a process-wide
            in-memory one when ``None``.
    """

    def __init__(self, path: Path | None = None, digests: DigestMemo | None = None) -> None:
        self.path = path
        self.digests = digests if digests is not None else _DIGESTS
        self._entries: dict[str, float] = {}
        self._dirty = False
        if path is not None:
            try:
                loaded: Any = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                loaded = None  # missing or corrupt memo: read the headers again, never fail
            if isinstance(loaded, dict):
                self._entries = {
                    str(digest): float(seconds)
                    for digest, seconds in loaded.items()
                    if isinstance(seconds, int | float) and math.isfinite(seconds)
                }

    def seconds(self, file: Path) -> float:
        """The length of ``file`` in seconds.

        Raises:
            UnreadableMedia: the file cannot be read or its header gives no length.
        """
        try:
            digest = self.digests.digest(file)
        except OSError as exc:
            raise UnreadableMedia(file, exc.strerror or str(exc)) from exc
        known = self._entries.get(digest)
        if known is None:
            known = _SECONDS.get(digest)
            if known is None:
                known = _SECONDS[digest] = read_seconds(file)
            self._entries[digest] = known
            self._dirty = True
        return known

    def save(self) -> None:
        """Persist the lengths and digests if they changed (best effort, like the digest memo)."""
        self.digests.save()
        if self.path is None or not self._dirty:
            return
        try:
            atomic_write(self.path, canonical_json(self._entries))
            self._dirty = False
        except OSError:
            pass
