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

Inputs are also checked to be what their names claim (:meth:`MediaMemo.content`), from
their first bytes only (:func:`sniff`): a PNG, JPEG or WEBP image; an MP4/MOV whose
top-level boxes (read by seeking from box header to box header) are a file type box, a
movie header and media data, whole; a WAV (``RIFF....WAVE``) or an MP3 (``ID3`` or an MPEG
audio frame sync). An empty file, a text file (a Git LFS pointer, an HTML error page) or
another format raises :class:`WrongContent`. The answer is memoised by digest in the same
memo as lengths, but only when the digest is known without reading the file (the digest
memo has it by size and mtime): a header read is cheaper than hashing a 30 MB image.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from storyboard.errors import StoryboardError
from storyboard.hashing import DigestMemo, atomic_write, canonical_json

__all__ = [
    "FORMATS",
    "READABLE",
    "DurationMemo",
    "MediaMemo",
    "UnreadableMedia",
    "WrongContent",
    "read_seconds",
    "sniff",
]

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


# -- what a file is, from its first bytes ---------------------------------------------------

# The formats the models accept (README "Media limits"), by kind, with the extensions each
# is written with (a file's extension says which format it claims to be).
FORMATS: dict[str, dict[str, tuple[str, ...]]] = {
    "image": {"PNG": (".png",), "JPEG": (".jpg", ".jpeg"), "WEBP": (".webp",)},
    "video": {"MP4/MOV": (".mp4", ".mov")},
    "audio": {"WAV": (".wav",), "MP3": (".mp3",)},
}
_KIND_OF = {name: kind for kind, names in FORMATS.items() for name in names}

_HEAD = 64  # bytes read for the magic numbers
_MAX_BOXES = 4096  # top-level MP4/MOV boxes walked before giving up (real files have < 20)
# Top-level box types a QuickTime file may open with (older MOVs have no 'ftyp').
_ISO_FIRST = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"})
_AUDIO_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P "})
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a BMP image"),
    (b"%PDF", "a PDF document"),
    (b"\x1aE\xdf\xa3", "a Matroska/WebM video"),
    (b"OggS", "an Ogg file"),
    (b"fLaC", "a FLAC audio file"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x00\x00\x01\xba", "an MPEG program stream"),
    (b"G", "an MPEG transport stream"),  # checked with the 188-byte packet rule below
)
_LFS_POINTER = b"version https://git-lfs"


class WrongContent(StoryboardError):
    """A media input is not what its name claims: empty, text, or another format.

    Attributes:
        path: the file.
        kind: what it should be (``image``, ``video`` or ``audio``).
        found: what it is, as a phrase ("it is empty", "it starts with 'hello'",
            "it is a PNG image").
        format: the accepted format it is, when it is one but its extension says another
            (a PNG named ``.jpg``); ``None`` otherwise.
    """

    exit_code = 2

    def __init__(self, path: Path, kind: str, found: str, format: str | None = None) -> None:
        self.path = path
        self.kind = kind
        self.found = found
        self.format = format
        super().__init__(self.describe(path.name))

    def describe(self, name: str) -> str:
        """The message, naming the file as ``name`` (validate gives its path as written)."""
        if self.format is not None:
            return f"{name} is {_a(self.format)} {self.format} {self.kind} named {self.path.suffix}"
        accepted = "/".join(FORMATS.get(self.kind, {})) or self.kind
        return f"{name} is not {_a(accepted)} {accepted} {self.kind} ({self.found})"

    def hint(self) -> str | None:
        name, stem, suffix = self.path.name, self.path.stem, self.path.suffix.lower()
        if self.format is not None:
            return f"rename it to {stem}{FORMATS[self.kind][self.format][0]}"
        if self.found == "it is empty":
            return "the file has no bytes: copy or export it again"
        if self.found.startswith("it is a Git LFS pointer"):
            return "fetch the real file: git lfs pull"
        if self.found.startswith("it starts with '"):
            return f"it is text: export a real {self.kind} file (renaming does not convert)"
        if "cut short" in self.found or "no movie header" in self.found:
            return "copy or download it again (an interrupted copy leaves a file like this)"
        return f"convert it, e.g. ffmpeg -i {name} {stem}-converted{suffix}"


def _a(name: str) -> str:
    """The article before a format's initials as they are read aloud ("an MP4", "a PNG")."""
    return "an" if name[:1] in "AEFHILMNORSX" else "a"


def sniff(path: Path) -> tuple[str | None, str]:
    """What ``path`` is, from its first bytes (and, for MP4/MOV, its top-level box headers).

    Returns:
        ``(format, found)``: ``format`` is one of the accepted names of :data:`FORMATS`
        (``"PNG"``, ``"MP4/MOV"``, ``"WAV"``, ...) or ``None``; ``found`` says what the file
        is in a phrase for messages ("it is empty", "it starts with 'hello'", "it is a GIF
        image", "it is cut short: ...").

    Raises:
        OSError: the file cannot be opened or read.
    """
    with open(path, "rb") as fh:  # noqa: PTH123 (the builtin is cheaper, and this runs per input)
        head = fh.read(_HEAD)
        if not head:
            return None, "it is empty"
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return "PNG", "it is a PNG image"
        if head.startswith(b"\xff\xd8\xff"):
            return "JPEG", "it is a JPEG image"
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return "WEBP", "it is a WEBP image"
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            return "WAV", "it is a WAV audio file"
        if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
            return None, "it is an AVI video"
        if head[:3] == b"ID3" or _mpeg_audio_sync(head):
            return "MP3", "it is an MP3 audio file"
        if head[4:8] in _ISO_FIRST:
            size = fh.seek(0, 2)
            return _iso_media(fh, size, head)
        for magic, what in _OTHER_MAGIC:
            if head.startswith(magic) and (magic != b"G" or _transport_stream(fh)):
                return None, f"it is {what}"
    return None, _describe_start(head)


def _mpeg_audio_sync(head: bytes) -> bool:
    """Whether ``head`` opens with an MPEG audio (MP1/2/3) frame header."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version = (head[1] >> 3) & 3
    layer = (head[1] >> 1) & 3
    bitrate = head[2] >> 4
    rate = (head[2] >> 2) & 3
    # 01 is a reserved version; layer 00 is reserved (ADTS AAC uses it); 1111 and 11 are bad.
    return version != 1 and layer != 0 and bitrate != 0xF and rate != 3


def _transport_stream(fh: BinaryIO) -> bool:
    fh.seek(188)
    return fh.read(1) == b"G"


def _iso_media(fh: BinaryIO, size: int, head: bytes) -> tuple[str | None, str]:
    """An MP4/MOV, walked box header to box header (a seek and a 16-byte read each)."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return None, "it is a HEIF/AVIF image"
        if brand in _AUDIO_BRANDS:
            return None, "it is an MP4 audio file (M4A), with no video"
    seen: set[bytes] = set()
    offset = 0
    for _ in range(_MAX_BOXES):
        if offset >= size:
            break
        fh.seek(offset)
        header = fh.read(16)
        if len(header) < 8:
            return None, f"it is cut short: {size - offset} stray bytes after its last box"
        box_size, box_type = struct.unpack(">I4s", header[:8])
        if box_size == 1 and len(header) == 16:
            (box_size,) = struct.unpack(">Q", header[8:16])
        elif box_size == 0:  # the last box runs to the end of the file
            box_size = size - offset
        if box_size < 8 or not all(32 <= c < 127 for c in box_type):
            return None, f"its box structure is broken at byte {offset}"
        name = box_type.decode("ascii")
        if offset + box_size > size:
            return None, (
                f"it is cut short: its {name!r} box needs {box_size} bytes, "
                f"{size - offset} are there"
            )
        seen.add(box_type)
        offset += box_size
    if b"moov" not in seen:
        return None, "it has no movie header ('moov' box): it looks cut short"
    if b"mdat" not in seen:
        return None, "it has no media data ('mdat' box)"
    return "MP4/MOV", "it is an MP4/MOV video"


def _describe_start(head: bytes) -> str:
    """'it starts with ...': the first line as text when it is text, else its first bytes."""
    if head.startswith(_LFS_POINTER):
        return "it is a Git LFS pointer, not the file"
    for cut in range(4):  # the read may end inside a multi-byte character
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        if text and all(ch.isprintable() or ch in "\t\r\n" for ch in text):
            first = text.lstrip().split("\n", 1)[0].rstrip("\r")[:24]
            return f"it starts with {first!r}" if first else "it holds only blank space"
        break
    return "it starts with bytes " + " ".join(f"{b:02x}" for b in head[:8])


def check_content(path: Path, kind: str) -> str:
    """The accepted format of ``path`` for ``kind``, read from its first bytes (no memo).

    Raises:
        WrongContent: it is empty, text, another format, or an accepted format under
            another format's extension.
    """
    try:
        format, found = sniff(path)
    except OSError as exc:
        raise WrongContent(path, kind, f"it cannot be read: {exc.strerror or exc}") from exc
    return _accept(path, kind, format, found)


def _accept(path: Path, kind: str, format: str | None, found: str) -> str:
    accepted = FORMATS.get(kind, {})
    if format is None or format not in accepted:
        if format is not None:
            found = f"it is {_a(format)} {format} {_KIND_OF[format]} file"
        raise WrongContent(path, kind, found)
    if path.suffix.lower() not in accepted[format]:
        raise WrongContent(path, kind, found, format)
    return format


# Lengths read from headers in this process, by content digest (shared by every memo).
_SECONDS: dict[str, float] = {}
# Accepted formats sniffed in this process, by content digest (shared by every memo).
_FORMATS_SEEN: dict[str, str] = {}
# Digests of files by (path, size, mtime), when the caller has no persisted memo.
_DIGESTS = DigestMemo(None)
# The key of ``media.json`` under which formats are kept beside the {digest: seconds} entries.
_FORMATS_KEY = "formats"


class MediaMemo:
    """Media lengths and formats memoised by content digest (in-process, and persisted
    in one JSON file if ``path``: ``{digest: seconds, ..., "formats": {digest: format}}``).

    Args:
        path: a JSON file remembering what was read across runs, or ``None``.
        digests: the memo that gives a file's digest (by size and mtime); a process-wide
            in-memory one when ``None``.
    """

    def __init__(self, path: Path | None = None, digests: DigestMemo | None = None) -> None:
        self.path = path
        self.digests = digests if digests is not None else _DIGESTS
        self._entries: dict[str, float] = {}
        self._formats: dict[str, str] = {}
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
                formats = loaded.get(_FORMATS_KEY)
                if isinstance(formats, dict):
                    self._formats = {
                        str(digest): name
                        for digest, name in formats.items()
                        if isinstance(name, str) and name in _KIND_OF
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

    def content(
        self, file: Path, kind: str, *, hash: bool = False, st: os.stat_result | None = None
    ) -> str:
        """The accepted format of ``file`` as a ``kind`` input (``"PNG"``, ``"MP4/MOV"``, ...).

        The answer is memoised by the file's digest. Unless ``hash`` (the caller needs the
        digest anyway, e.g. to read a length next), the digest is used only when the digest
        memo knows it by size and mtime: hashing a large image costs more than sniffing it.
        A file that is not acceptable is never memoised. ``st``: the file's stat, when the
        caller has it (saves a second one).

        Raises:
            WrongContent: it is empty, text, another format, or an accepted format under
                another format's extension (see :func:`check_content`).
        """
        try:
            digest = self.digests.digest(file) if hash else self.digests.known(file, st)
        except OSError as exc:
            raise WrongContent(file, kind, f"it cannot be read: {exc.strerror or exc}") from exc
        name = None
        if digest is not None:
            name = self._formats.get(digest) or _FORMATS_SEEN.get(digest)
        if name is None or _KIND_OF.get(name) != kind:
            name = check_content(file, kind)
        else:
            _accept(file, kind, name, "")
        if digest is not None:
            # Known in this process but not yet in this memo's file: persist it too.
            _FORMATS_SEEN[digest] = name
            if self._formats.get(digest) != name:
                self._formats[digest] = name
                self._dirty = True
        return name

    def save(self) -> None:
        """Persist what was read, and the digests, if they changed (best effort, like the
        digest memo)."""
        self.digests.save()
        if self.path is None or not self._dirty:
            return
        data: dict[str, Any] = dict(self._entries)
        if self._formats:
            data[_FORMATS_KEY] = self._formats
        try:
            atomic_write(self.path, canonical_json(data))
            self._dirty = False
        except OSError:
            pass


# The name this memo had when it held lengths only.
DurationMemo = MediaMemo
