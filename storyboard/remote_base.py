"""What the remote store's files say, its errors, and the shared folder's two primitives.

The records of :mod:`storyboard.remote` (issue 12), kept apart so that module stays one
class: a claim (:class:`ClaimInfo`; :class:`Claim` when this run holds it, :class:`Held`
when another does), a key record as the remote keeps it (the store's record with its
sha256), the reports of a push or a pull, the errors (:class:`RemoteError` and its kinds),
and how a file is created only-if-absent (:func:`local_create`) or replaced whole
(:func:`local_replace`) on a shared folder, atomically. Nothing here touches the network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from storyboard.cache import ClipEntry, Provenance
from storyboard.errors import StoryboardError

__all__ = [
    "DIGEST",
    "TAKE_OVER_GRACE",
    "Claim",
    "ClaimInfo",
    "ClaimsUnsupported",
    "Held",
    "KeyRecord",
    "Outcome",
    "RemoteCorrupt",
    "RemoteError",
    "RemoteUnavailable",
    "TransferEvent",
    "TransferReport",
    "env_secrets",
    "key_record",
    "local_create",
    "local_replace",
    "parse_key_record",
    "shown_url",
    "this_host",
    "win_take_over",
]

Outcome = Literal["sent", "fetched", "skipped", "missing", "corrupt", "failed"]
_CLAIM_FORMAT = 1
DIGEST = re.compile(r"^[0-9a-f]{64}$")
# Variables whose values are credentials of some backend (or a provider): kept out of messages.
_SECRET_WORDS = (
    *("SECRET", "TOKEN", "PASSWORD", "ACCESS_KEY", "ACCOUNT_KEY", "API_KEY"),
    *("CONNECTION_STRING", "CREDENTIAL", "SAS"),
)


# -- errors ----------------------------------------------------------------------------------


class RemoteError(StoryboardError):
    """The remote store failed an operation (exit 1).

    Attributes:
        url: the remote's URL (without any user information).
        operation: what was being done (``read``, ``upload``, ``claim``...).
        path: the file in the remote, relative to its URL, if one.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        operation: str,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.operation = operation
        self.path = path
        self._hint = hint

    def hint(self) -> str | None:
        return self._hint


class RemoteUnavailable(RemoteError):
    """The remote cannot be used (unreachable, refused, missing): found before anything was
    submitted (exit 2)."""

    exit_code = 2


class ClaimsUnsupported(RemoteUnavailable):
    """The remote's backend has no atomic create, so it cannot hold claims (exit 2)."""


class RemoteCorrupt(RemoteError):
    """The remote holds bytes that are not what their name says (a clip or a key record)."""


# -- claims ----------------------------------------------------------------------------------


def this_host(environ: Mapping[str, str] | None = None) -> str:
    """The name this machine gives itself in claims: ``$STORYBOARD_HOST``, else its name."""
    env = os.environ if environ is None else environ
    return env.get("STORYBOARD_HOST", "").strip() or os.uname().nodename


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class ClaimInfo:
    """What a claim on a generation key says.

    Attributes:
        key: the generation key.
        host: the machine that holds it (:func:`this_host` there).
        pid: its process.
        run_id: the run that made (or took over) the claim.
        provider: the provider the take is submitted to.
        task_id: the provider's task, once it answered (``None`` before).
        shot: the shot (for messages).
        storyboard: the storyboard, as the project names it (for messages).
        since: when it was claimed (Unix time).
        deadline: when it is stale (Unix time): the task deadline of the run.
        take: the take of the shot.
        seed: the seed submitted (a random seed as resolved), when known.
        taken_over: the record of a take-over (who, from whom, why); empty for a first claim.
    """

    key: str
    host: str
    pid: int
    run_id: str
    provider: str
    task_id: str | None
    shot: str
    storyboard: str
    since: float
    deadline: float
    take: int = 0
    seed: int | None = None
    taken_over: str = ""

    def stale(self, now: float | None = None, *, host: str | None = None) -> bool:
        """Past its deadline, or made on this host (``host``, default :func:`this_host`) by a
        process that is gone."""
        moment = time.time() if now is None else now
        if moment > self.deadline:
            return True
        here = this_host() if host is None else host
        return self.host == here and not _alive(self.pid)

    def gone(self, *, host: str | None = None) -> bool:
        """Made on this host by a process that is gone (one reason a claim is stale)."""
        here = this_host() if host is None else host
        return self.host == here and not _alive(self.pid)

    def to_json(self) -> dict[str, Any]:
        return {
            "claim": _CLAIM_FORMAT,
            "key": self.key,
            "host": self.host,
            "pid": self.pid,
            "run_id": self.run_id,
            "provider": self.provider,
            "task_id": self.task_id,
            "shot": self.shot,
            "storyboard": self.storyboard,
            "since": self.since,
            "deadline": self.deadline,
            "take": self.take,
            "seed": self.seed,
            "taken_over": self.taken_over,
        }

    @classmethod
    def from_json(cls, data: object) -> ClaimInfo | None:
        """The claim as stored, or ``None`` when it is not one."""
        if not isinstance(data, Mapping):
            return None
        try:
            task_id, seed = data.get("task_id"), data.get("seed")
            return cls(
                key=str(data["key"]),
                host=str(data["host"]),
                pid=int(data["pid"]),
                run_id=str(data["run_id"]),
                provider=str(data["provider"]),
                task_id=str(task_id) if task_id else None,
                shot=str(data.get("shot", "")),
                storyboard=str(data.get("storyboard", "")),
                since=float(data["since"]),
                deadline=float(data["deadline"]),
                take=int(data.get("take", 0)),
                seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
                taken_over=str(data.get("taken_over", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Claim:
    """A claim this process holds (it may submit the key)."""

    info: ClaimInfo

    @property
    def key(self) -> str:
        return self.info.key


@dataclass(frozen=True)
class Held:
    """The key is claimed by someone else: ``info`` says who, since when, until when."""

    info: ClaimInfo


# -- transfers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferReport:
    """What a push or a pull did.

    Attributes:
        sent: clips pushed (an object, a key record or both were sent).
        fetched: clips pulled into the store.
        skipped: clips already where they were going.
        bytes: bytes of objects moved.
        failed: ``(key, message)`` of each clip that could not be moved.
        missing: (pull) keys the remote does not have.
        corrupt: (pull) keys whose remote copy was refused (wrong bytes; removed from the
            remote, so a push restores it).
    """

    sent: int = 0
    fetched: int = 0
    skipped: int = 0
    bytes: int = 0
    failed: tuple[tuple[str, str], ...] = ()
    missing: tuple[str, ...] = ()
    corrupt: tuple[str, ...] = ()


@dataclass(frozen=True)
class TransferEvent:
    """One clip of a push or pull is done: ``outcome`` says how (``done`` of ``total``)."""

    key: str
    outcome: Outcome
    done: int
    total: int
    bytes: int = 0
    message: str = ""


def key_record(entry: ClipEntry) -> dict[str, Any]:
    """The key record of a stored clip, as the store writes it, with its sha256."""
    return {
        "key": entry.key,
        "digest": entry.digest,
        "sha256": entry.digest,
        "seconds": round(entry.seconds, 6),
        "size": entry.size,
        "shot": entry.shot,
        "take": entry.take,
        "info": {k: v for k, v in entry.provenance.to_json().items() if k != "time"},
        "time": entry.provenance.time,
    }


@dataclass(frozen=True)
class KeyRecord:
    digest: str
    size: int
    seconds: float
    shot: str
    take: int
    provenance: Provenance


def parse_key_record(key: str, raw: bytes) -> KeyRecord | None:
    try:
        data = json.loads(raw)
        digest, size = str(data["digest"]), int(data["size"])
        sha = data.get("sha256", digest)
        seconds, shot, take = float(data["seconds"]), str(data["shot"]), int(data["take"])
        info = data.get("info")
        provenance = Provenance.from_json(
            {**(info if isinstance(info, Mapping) else {}), "time": data.get("time")}
        )
    except (ValueError, KeyError, TypeError):
        return None
    if data.get("key") != key or sha != digest or not DIGEST.match(digest) or size < 0:
        return None
    return KeyRecord(digest, size, seconds, shot, take, provenance)


# -- the shared folder -----------------------------------------------------------------------


def local_replace(path: Path, *, data: bytes | None = None, source: Path | None = None) -> None:
    """Write ``data`` (or copy ``source``) to ``path`` through a temporary sibling and a rename,
    so a reader on the shared drive never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        if source is not None:
            shutil.copyfile(source, tmp)
        else:
            tmp.write_bytes(data or b"")
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def local_create(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data`` unless it exists: a hard link of a complete temporary
    file (atomic, and readers never see it half written), else ``O_EXCL``.

    Raises:
        FileExistsError: ``path`` exists.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: O_EXCL
            with path.open("xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    finally:
        tmp.unlink(missing_ok=True)


def shown_url(url: str) -> str:
    """The URL without any user information (``scheme://user:pass@host`` -> ``scheme://host``)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1", url)


def env_secrets(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Values of variables that hold credentials (of any backend or provider)."""
    return tuple(
        value
        for name, value in environ.items()
        if len(value.strip()) >= 6 and any(word in name.upper() for word in _SECRET_WORDS)
    )


#: Seconds a take-over marker keeps others from taking over the same stale claim: its run
#: writes the new claim right after making it; an older marker's run died on the way.
TAKE_OVER_GRACE = 120.0


def win_take_over(
    key: str,
    old: ClaimInfo,
    run_id: str,
    note: bytes,
    create: Callable[[str, bytes], None],
    read: Callable[[str], bytes | None],
    grace: float,
) -> bool:
    """Create, atomically (``create``: exclusive, raising ``FileExistsError``), the marker
    ``takeovers/<kk>/<key>.<run>-<since>.<n>.json`` of a take-over of the claim ``old``:
    ``True`` when this run (``run_id``) did and may replace the claim, ``False`` when another
    run's marker is there and younger than ``grace`` seconds (it is replacing the claim now).

    Only one run can make a given marker, so of two runs taking over one stale claim one
    wins. A run that made its marker and died before writing the claim leaves an old one:
    the next number ``n`` is then tried, as atomically. ``note`` (JSON with ``run_id`` and
    ``at``) is what a marker holds; ``read`` reads one back (``None``: not there).
    """
    made = f"{old.run_id}-{round(old.since * 1000)}"
    for attempt in range(1, 1000):
        marker = f"takeovers/{key[:2]}/{key}.{made}.{attempt}.json"
        try:
            create(marker, note)
            return True
        except FileExistsError:
            pass
        raw = read(marker)
        try:
            seen = json.loads(raw) if raw is not None else {}
            at, who = float(seen["at"]), seen.get("run_id")
        except (ValueError, KeyError, TypeError):
            at, who = 0.0, None  # gone or unreadable: as old as can be
        if who == run_id:
            return True  # this run's own create, resent after a lost reply
        if time.time() - at < grace:
            return False
    return False  # pragma: no cover - a thousand dead takers
