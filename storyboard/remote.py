"""The project's remote store (issue 12): clips and key records a team shares, and claims.

A remote is a URL in ``storyboard.toml`` (``[remote] url``), reached through fsspec and the
backend's own package: s3fs for ``s3://`` (AWS, MinIO, R2, any ``endpoint_url``), gcsfs for
``gs://``, adlfs for ``az://``, and fsspec's local file system for a plain folder path or
``file://`` (a shared drive). Credentials are the backend's usual ones (the environment,
``~/.aws``, a profile); they are never written to the remote, the store, a claim or a message.

Layout under the URL::

    objects/<dd>/<digest>.mp4     every clip once, named by its sha256 (as in the local store)
    keys/<kk>/<key>.json          the store's key record of a generation key, with its sha256
    claims/<kk>/<key>.json        who is rendering a generation key right now
    takeovers/<kk>/<key>.<claim>.<n>.json   one per take-over of a stale claim (kept)
    .probe-<run>.json             for a moment: a render proving it may create files there

Transfers are content-addressed, so a re-run skips what is there and an interrupted one is
resumed by running it again. A push uploads an object the remote lacks (or holds with another
size), checks its size once it is there, then writes the key record, which carries the clip's
sha256: a key record never names an object that is not complete. A pull reads the key record,
downloads the object into the store's ``tmp/``, checks its sha256 and size, and only then
moves it into the store; an object whose bytes are not what its name says is refused, never
adopted, and removed from the remote (its name proves it wrong), so the next push restores it.

Claims make "never pay twice" hold for a team (see :mod:`storyboard.teamwork`). Before a paid
submit a run creates ``claims/<kk>/<key>.json`` only if it does not exist, atomically:

* S3: a conditional PUT (``If-None-Match: *``, s3fs ``pipe_file(mode="create")``);
* GCS: the same call, which gcsfs sends with the generation-match precondition
  ``ifGenerationMatch=0`` (gcsfs calls its exclusive mode experimental; not exercised by
  the test suite, which has no GCS server);
* a shared folder: a hard link of a complete temporary file to the claim's name, which fails
  when the name exists (``O_EXCL``, ``open(path, "xb")``, where links are not supported);
* anything else: refused (:class:`ClaimsUnsupported`): no claim without atomicity.

A claim (:class:`ClaimInfo`) records the host, pid and run that holds it, the provider and,
once the provider answered, the task id, the shot, the storyboard, since when and until when
(its deadline, the task deadline of the run). It is *stale* past its deadline, or when it was
made on this host by a process that is gone. The host is ``$STORYBOARD_HOST`` when set (two
working copies on one machine can act as two machines), else the machine's name. Deadlines
compare wall clocks: machines of a team keep their clocks in sync (NTP).

Every call has a deadline: s3fs gets connect and read timeouts and a bounded number of
retries; reads, deletes and content-addressed writes are retried a bounded number of times,
and nothing else is (a claim's create is never resent blindly: a create whose reply was lost
is settled by reading the claim back). Failures become :class:`RemoteError`, naming the
remote's URL (never a credential) and the one thing to do.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from storyboard.cache import ClipEntry, Store
from storyboard.errors import StoryboardError, redact_secrets
from storyboard.hashing import canonical_json, sha256_file
from storyboard.remote_base import (
    DIGEST,
    TAKE_OVER_GRACE,
    Claim,
    ClaimInfo,
    ClaimsUnsupported,
    Held,
    Outcome,
    RemoteCorrupt,
    RemoteError,
    RemoteUnavailable,
    TransferEvent,
    TransferReport,
    env_secrets,
    key_record,
    local_create,
    local_replace,
    parse_key_record,
    shown_url,
    this_host,
    win_take_over,
)

if TYPE_CHECKING:
    from storyboard.project import RemoteConfig

__all__ = [
    "Claim",
    "ClaimInfo",
    "ClaimsUnsupported",
    "Held",
    "Remote",
    "RemoteCorrupt",
    "RemoteError",
    "RemoteUnavailable",
    "TransferEvent",
    "TransferReport",
    "this_host",
]

_T = TypeVar("_T")

# Seconds s3fs waits for a connection and for each read; attempts botocore makes per call.
_CONNECT_TIMEOUT = 10
_READ_TIMEOUT = 60
_BOTO_ATTEMPTS = 3
_S3FS_RETRIES = 2
# Our own bound on retries of an idempotent call (on top of the backend's), and the first pause.
_ATTEMPTS = 3
_PAUSE = 0.2
_KEY = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
_LOCAL = frozenset({"file", "local"})
# The package that brings each backend (fsspec imports it when a URL needs it).
_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs"}
_PACKAGES |= {"abfs": "adlfs", "abfss": "adlfs"}
_CREATE_ATOMIC = frozenset({"s3", "s3a", "gs", "gcs"})


# -- the remote ------------------------------------------------------------------------------


class Remote:
    """The project's remote store, over an fsspec file system (see the module)."""

    def __init__(
        self, fs: Any, root: str, url: str, protocol: str, *, secrets: Iterable[str] = ()
    ) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        self.protocol = protocol
        self.host = this_host()
        self.pid = os.getpid()
        self.run_id = uuid.uuid4().hex[:12]
        self._secrets = tuple(secrets)
        self._local = protocol in _LOCAL

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, config: RemoteConfig, *, environ: Mapping[str, str] | None = None) -> Remote:
        """Reach the remote ``config`` names (nothing is sent until a method is called).

        Raises:
            RemoteUnavailable: the URL's backend is not installed or does not accept the
                options.
        """
        env = os.environ if environ is None else environ
        secrets = env_secrets(env)
        url = config.url
        shown = shown_url(url)
        protocol = url.split("://", 1)[0].lower() if "://" in url else "file"
        options: dict[str, Any] = dict(config.options)
        if protocol in ("s3", "s3a"):
            kwargs = dict(options.pop("config_kwargs", None) or {})
            kwargs.setdefault("connect_timeout", _CONNECT_TIMEOUT)
            kwargs.setdefault("read_timeout", _READ_TIMEOUT)
            kwargs.setdefault("retries", {"max_attempts": _BOTO_ATTEMPTS, "mode": "standard"})
            options["config_kwargs"] = kwargs
        if protocol not in _LOCAL:
            # A fresh client: listings cached by another instance would hide a teammate's push.
            options.setdefault("skip_instance_cache", True)
            options.setdefault("use_listings_cache", False)
        try:
            # Imported here (start-up time), by name: fsspec ships no type information.
            fsspec_core = importlib.import_module("fsspec.core")
        except ImportError as exc:
            raise RemoteUnavailable(
                f"the remote {shown} needs fsspec, which is not installed",
                url=shown,
                operation="open",
                hint="pip install fsspec (and s3fs for an s3:// remote)",
            ) from exc
        try:
            fs, root = fsspec_core.url_to_fs(url, **options)
        except ImportError as exc:
            package = _PACKAGES.get(protocol)
            raise RemoteUnavailable(
                f"the remote {shown} needs {package or f'a backend for {protocol}://'}, which "
                "is not installed",
                url=shown,
                operation="open",
                hint=f"pip install {package}"
                if package
                else f"install the fsspec backend for {protocol}:// (fsspec's documentation "
                "lists them)",
            ) from exc
        except (TypeError, ValueError) as exc:
            raise RemoteUnavailable(
                f"the remote {shown} cannot be opened: {redact_secrets(str(exc), secrets)}",
                url=shown,
                operation="open",
                hint="check the [remote] table of storyboard.toml",
            ) from None
        if protocol in ("s3", "s3a") and hasattr(fs, "retries"):
            fs.retries = _S3FS_RETRIES  # s3fs's own retries, on top of botocore's
        return cls(fs, str(root), shown, protocol, secrets=secrets)

    @property
    def supports_claims(self) -> bool:
        """Whether the backend can create a file only if it does not exist, atomically."""
        return self._local or self.protocol in _CREATE_ATOMIC

    def check(self, *, claims: bool = False) -> None:
        """Prove the remote is there and answers (one small read; with ``claims``, that it can
        hold claims and be written: a probe claim is created and removed).

        Raises:
            RemoteUnavailable: it cannot be reached, refuses the credentials, or is missing.
            ClaimsUnsupported: ``claims`` and the backend has no atomic create.
        """
        if claims and not self.supports_claims:
            raise ClaimsUnsupported(
                f"the remote {self.url} cannot hold claims: {self.protocol}:// has no atomic "
                "create here, and without one two machines could pay for one take",
                url=self.url,
                operation="claim",
                hint="use an s3://, gs:// or shared-folder remote, or render with --no-remote",
            )
        try:
            if self._local:
                if not Path(self.root).is_dir():
                    raise FileNotFoundError(self.root)
            else:
                # The backend's own retries only: a remote that is down is said at once.
                self._retry("read", "", lambda: self.fs.info(self._bucket()), attempts=1)
            if claims:
                # A unique name: resending its create after a lost reply cannot clash.
                probe = f".probe-{self.run_id}.json"
                with contextlib.suppress(FileExistsError):
                    self._retry("claim", probe, lambda: self._create(self._path(probe), b"{}"))
                self._retry("delete", probe, lambda: self._rm(self._path(probe)))
        except FileNotFoundError:
            what = "folder" if self._local else "bucket"
            raise RemoteUnavailable(
                f"the remote {self.url} does not exist (no such {what})",
                url=self.url,
                operation="check",
                hint=f"mkdir -p {self.root}"
                if self._local
                else "create the bucket, or fix [remote] url in storyboard.toml",
            ) from None
        except RemoteUnavailable:
            raise
        except RemoteError as exc:
            raise RemoteUnavailable(
                str(exc), url=self.url, operation="check", path=exc.path, hint=exc.hint()
            ) from exc
        except Exception as exc:
            raise self._error("check", "", exc, unavailable=True) from None

    # -- paths and calls -------------------------------------------------------------------

    def _bucket(self) -> str:
        return self.root.split("/", 1)[0]

    def _path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    @staticmethod
    def object_name(digest: str) -> str:
        return f"objects/{digest[:2]}/{digest}.mp4"

    @staticmethod
    def key_name(key: str) -> str:
        return f"keys/{key[:2]}/{key}.json"

    @staticmethod
    def claim_name(key: str) -> str:
        return f"claims/{key[:2]}/{key}.json"

    def _error(
        self, operation: str, relative: str, exc: BaseException, *, unavailable: bool = False
    ) -> RemoteError:
        what = redact_secrets(f"{type(exc).__name__}: {exc}", self._secrets)
        where = f" {relative}" if relative else ""
        denied = isinstance(exc, PermissionError)
        hint = (
            "check the credentials the backend finds (for S3: AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY, ~/.aws, a profile) and their rights on the remote"
            if denied
            else "check the network and the [remote] table of storyboard.toml, then run "
            "again (or render with --no-remote to work alone)"
        )
        kind = RemoteUnavailable if unavailable else RemoteError
        return kind(
            f"remote {self.url}: {operation}{where} failed: {what}",
            url=self.url,
            operation=operation,
            path=relative or None,
            hint=hint,
        )

    def _retry(
        self, operation: str, relative: str, call: Callable[[], _T], *, attempts: int = _ATTEMPTS
    ) -> _T:
        """``call`` (idempotent), retried a bounded number of times on transient errors.

        ``FileNotFoundError`` and ``FileExistsError`` are answers, not failures: they reach the
        caller as they are. Anything else left after the last attempt is a :class:`RemoteError`.
        """
        for attempt in range(attempts):
            try:
                return call()
            except (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError):
                raise
            except PermissionError as exc:
                raise self._error(operation, relative, exc) from None
            except Exception as exc:
                if attempt + 1 >= attempts:
                    raise self._error(operation, relative, exc) from None
                time.sleep(_PAUSE * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, relative: str) -> bytes | None:
        """The bytes at ``relative``, or ``None`` when there is no such file."""
        try:
            return bytes(
                self._retry("read", relative, lambda: self.fs.cat_file(self._path(relative)))
            )
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def _size(self, relative: str) -> int | None:
        """The size of the file at ``relative``, or ``None`` when there is none."""
        try:
            info = self._retry("read", relative, lambda: self.fs.info(self._path(relative)))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if info.get("type") not in (None, "file"):
            return None
        return int(info.get("size") or 0)

    def _rm(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)

    def _write(self, relative: str, data: bytes) -> None:
        """Write (or replace) a small file whole: readers see the old bytes or the new."""
        path = self._path(relative)
        if self._local:
            self._retry("write", relative, lambda: local_replace(Path(path), data=data))
        else:
            self._retry("write", relative, lambda: self.fs.pipe_file(path, data))

    def _create(self, path: str, data: bytes) -> None:
        """Create ``path`` holding ``data`` only if it does not exist, atomically.

        Raises:
            FileExistsError: it exists.
        """
        if self._local:
            local_create(Path(path), data)
        elif self.protocol in _CREATE_ATOMIC:
            self.fs.pipe_file(path, data, mode="create")
        else:  # pragma: no cover - refused by check(claims=True) first
            raise ClaimsUnsupported(
                f"the remote {self.url} cannot hold claims",
                url=self.url,
                operation="claim",
                hint="render with --no-remote",
            )

    # -- objects and key records -----------------------------------------------------------

    def has_object(self, digest: str) -> bool:
        """Whether the remote holds the object ``digest`` (by name; a pull checks its bytes)."""
        return self._size(self.object_name(digest)) is not None

    def has_key(self, key: str) -> bool:
        """Whether the remote holds a key record for ``key``."""
        return self._size(self.key_name(key)) is not None

    def push_clip(self, store: Store, entry: ClipEntry) -> bool:
        """Send a stored clip: its object (unless the remote has it, same size), then its key
        record (unless the remote's is the same). Returns whether anything was sent.

        Raises:
            RemoteCorrupt: the clip in the local store is not what its digest says (it is
                dropped from the store; nothing is sent).
            RemoteError: the remote failed, or the uploaded object has the wrong size.
        """
        if not store.verified(entry):
            raise RemoteCorrupt(
                f"the stored clip of shot {entry.shot} take {entry.take} is not what its digest "
                "says (changed on disk); it was dropped from the store and not pushed",
                url=self.url,
                operation="push",
                path=self.object_name(entry.digest),
                hint="render it again (`storyboard render --live FILE`), then push",
            )
        if entry.provenance.time is None:  # the entry put() returns: the record knows when
            recorded = store.lookup(entry.key)
            if recorded is not None and recorded.digest == entry.digest:
                entry = recorded
        sent = False
        name = self.object_name(entry.digest)
        if self._size(name) != entry.size:
            self._upload(entry.path, name)
            size = self._size(name)
            if size != entry.size:
                with contextlib.suppress(Exception):
                    self._rm(self._path(name))
                raise RemoteError(
                    f"remote {self.url}: the upload of {name} left {size} bytes, not "
                    f"{entry.size}; it was removed",
                    url=self.url,
                    operation="upload",
                    path=name,
                    hint="push again",
                )
            sent = True
        record = canonical_json(key_record(entry))
        key_name = self.key_name(entry.key)
        if self._read(key_name) != record:
            self._write(key_name, record)
            sent = True
        return sent

    def _upload(self, source: Path, relative: str) -> None:
        path = self._path(relative)
        if self._local:
            self._retry("upload", relative, lambda: local_replace(Path(path), source=source))
        else:  # an S3/GCS object appears whole or not at all
            self._retry("upload", relative, lambda: self.fs.put_file(str(source), path))

    def read_record(self, key: str) -> ClipEntry | None:
        """The remote's key record of ``key`` as a clip entry (its ``path`` is the local store's
        object path it would have), or ``None`` when the remote has none.

        Raises:
            RemoteCorrupt: the key record cannot be read.
        """
        name = self.key_name(key)
        raw = self._read(name)
        if raw is None:
            return None
        record = parse_key_record(key, raw)
        if record is None:
            raise RemoteCorrupt(
                f"remote {self.url}: the key record {name} cannot be read",
                url=self.url,
                operation="read",
                path=name,
                hint="push the clip again from a machine that has it (`storyboard push FILE`)",
            )
        return ClipEntry(
            key, record.digest, Path(name), record.seconds, record.size, record.shot,
            record.take, record.provenance,
        )  # fmt: skip

    def pull_clip(self, store: Store, key: str) -> ClipEntry | None:
        """Bring the clip of ``key`` into the store, verified; ``None`` when the remote does not
        have it. A clip the store already holds is not downloaded again.

        Raises:
            RemoteCorrupt: the remote's bytes are not what their name says: nothing was
                adopted, and the bad object was removed from the remote.
            RemoteError: the remote failed.
        """
        remote = self.read_record(key)
        if remote is None:
            return None
        have = store.lookup(key)
        if have is not None and have.digest == remote.digest:
            return have
        entry = replace(remote, path=store.object_path(remote.digest))
        local = store.locate(
            key, remote.digest, seconds=remote.seconds, shot=remote.shot, take=remote.take,
            provenance=remote.provenance,
        )  # fmt: skip
        if local is not None and store.verified(local):
            store.link(local)  # another key produced the same bytes: only the record is new
            return local
        name = self.object_name(remote.digest)
        part = store.tmp_dir() / f"pull-{uuid.uuid4().hex}.part.mp4"
        try:
            try:
                self._retry("download", name, lambda: self.fs.get_file(self._path(name), str(part)))
            except (FileNotFoundError, NotADirectoryError):
                return None  # a key record whose object is gone: the remote does not have it
            size = part.stat().st_size
            digest = sha256_file(part)
            if digest != remote.digest or size != remote.size:
                # The name proves these bytes wrong: removed, so a push can put them right.
                with contextlib.suppress(Exception):
                    self._retry("delete", name, lambda: self._rm(self._path(name)))
                raise RemoteCorrupt(
                    f"remote {self.url}: {name} is not the clip of shot {remote.shot} take "
                    f"{remote.take} (sha256 {digest[:12]}…, {size} bytes; expected "
                    f"{remote.digest[:12]}…, {remote.size} bytes); refused and removed",
                    url=self.url,
                    operation="download",
                    path=name,
                    hint="push it again from a machine that has it (`storyboard push FILE`)",
                )
            stored = store.put(
                key, part, seconds=remote.seconds, shot=remote.shot, take=remote.take,
                provenance=remote.provenance,
            )  # fmt: skip
        finally:
            part.unlink(missing_ok=True)
        # Keep the record's own time (when the clip was made), not the time of the pull.
        entry = replace(stored, provenance=remote.provenance)
        store.link(entry)
        return entry

    def push_many(
        self,
        store: Store,
        entries: Iterable[ClipEntry],
        jobs: int = 8,
        on_progress: Callable[[TransferEvent], None] | None = None,
    ) -> TransferReport:
        """:meth:`push_clip` for every entry, ``jobs`` at a time (``on_progress`` is called from
        worker threads, one call at a time)."""
        items = list(entries)

        def one(entry: ClipEntry) -> tuple[Outcome, int]:
            sent = self.push_clip(store, entry)
            return ("sent", entry.size) if sent else ("skipped", 0)

        return self._many([(e.key, e) for e in items], one, jobs, on_progress)

    def pull_many(
        self,
        store: Store,
        keys: Iterable[str],
        jobs: int = 8,
        on_progress: Callable[[TransferEvent], None] | None = None,
    ) -> TransferReport:
        """:meth:`pull_clip` for every key, ``jobs`` at a time (see :meth:`push_many`)."""

        def one(key: str) -> tuple[Outcome, int]:
            before = store.lookup(key)
            entry = self.pull_clip(store, key)
            if entry is None:
                return "missing", 0
            if before is not None and before.digest == entry.digest:
                return "skipped", 0
            return "fetched", entry.size

        return self._many([(k, k) for k in dict.fromkeys(keys)], one, jobs, on_progress)

    def _many(
        self,
        items: list[tuple[str, Any]],
        one: Callable[[Any], tuple[Outcome, int]],
        jobs: int,
        on_progress: Callable[[TransferEvent], None] | None,
    ) -> TransferReport:
        counts = {"sent": 0, "fetched": 0, "skipped": 0}
        moved = 0
        failed: list[tuple[str, str]] = []
        missing: list[str] = []
        corrupt: list[str] = []
        lock = threading.Lock()
        done = 0

        def run(item: tuple[str, Any]) -> None:
            nonlocal moved, done
            key, value = item
            message = ""
            outcome: Outcome
            try:
                outcome, size = one(value)
            except RemoteCorrupt as exc:
                outcome, size, message = "corrupt", 0, str(exc)
            except (StoryboardError, OSError) as exc:
                outcome, size = "failed", 0
                message = redact_secrets(str(exc), self._secrets)
            with lock:
                done += 1
                if outcome in counts:
                    counts[outcome] += 1
                elif outcome == "missing":
                    missing.append(key)
                elif outcome == "corrupt":
                    corrupt.append(key)
                else:
                    failed.append((key, message))
                moved += size
                if on_progress is not None:
                    on_progress(TransferEvent(key, outcome, done, len(items), size, message))

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(run, items))
        return TransferReport(
            sent=counts["sent"],
            fetched=counts["fetched"],
            skipped=counts["skipped"],
            bytes=moved,
            failed=tuple(sorted(failed)),
            missing=tuple(sorted(missing)),
            corrupt=tuple(sorted(corrupt)),
        )

    def list_objects(self) -> dict[str, int]:
        """Every object in the remote: digest -> size (files of other names are ignored)."""
        found = self._find("objects")
        out: dict[str, int] = {}
        for path, size in found.items():
            folder, _, name = path.rpartition("/")
            digest = name.removesuffix(".mp4")
            if name.endswith(".mp4") and DIGEST.match(digest) and folder.endswith(digest[:2]):
                out[digest] = size
        return out

    def list_keys(self) -> set[str]:
        """Every generation key the remote holds a key record of."""
        return {
            name.removesuffix(".json")
            for name in (p.rpartition("/")[2] for p in self._find("keys"))
            if name.endswith(".json") and _KEY.match(name.removesuffix(".json"))
        }

    def _find(self, folder: str) -> dict[str, int]:
        def find() -> dict[str, int]:
            try:
                found = self.fs.find(self._path(folder), detail=True)
            except FileNotFoundError:
                return {}
            return {
                str(path): int(info.get("size") or 0)
                for path, info in found.items()
                if info.get("type", "file") == "file"
            }

        return self._retry("list", folder, find)

    def delete_object(self, digest: str) -> None:
        """Remove an object (nothing happens when it is not there)."""
        name = self.object_name(digest)
        self._retry("delete", name, lambda: self._rm(self._path(name)))

    def delete_key(self, key: str) -> None:
        """Remove a key record (nothing happens when it is not there)."""
        name = self.key_name(key)
        self._retry("delete", name, lambda: self._rm(self._path(name)))

    # -- claims ----------------------------------------------------------------------------

    def read_claim(self, key: str) -> ClaimInfo | None:
        """The claim on ``key``, or ``None`` when nobody holds one (or it cannot be read)."""
        raw = self._read(self.claim_name(key))
        if raw is None:
            return None
        try:
            return ClaimInfo.from_json(json.loads(raw))
        except ValueError:
            return None

    def _mine(self, info: ClaimInfo) -> bool:
        return (info.host, info.pid, info.run_id) == (self.host, self.pid, self.run_id)

    def claim(
        self,
        key: str,
        *,
        provider: str,
        shot: str,
        storyboard: str,
        deadline_s: float,
        take: int = 0,
        seed: int | None = None,
    ) -> Claim | Held:
        """Claim ``key`` for this run, atomically: :class:`Claim` when it was free (this run may
        submit), else :class:`Held` with the claim that is there.

        Raises:
            ClaimsUnsupported: the backend has no atomic create.
            RemoteError: the remote failed (the outcome is then settled by reading the claim
                back: a create whose reply was lost and that did land is this run's claim).
        """
        now = time.time()
        info = ClaimInfo(
            key, self.host, self.pid, self.run_id, provider, None, shot, storyboard,
            since=now, deadline=now + deadline_s, take=take, seed=seed,
        )  # fmt: skip
        name = self.claim_name(key)
        data = canonical_json(info.to_json())
        for _ in range(_ATTEMPTS):
            try:
                self._create(self._path(name), data)
                return Claim(info)
            except FileExistsError:
                pass
            except RemoteError:
                raise
            except Exception as exc:
                # The create may have landed and its reply been lost: read it back.
                there = self.read_claim(key)
                if there is not None and self._mine(there):
                    return Claim(there)
                if there is None:
                    raise self._error("claim", name, exc) from None
                return Held(there)
            there = self.read_claim(key)
            if there is None:
                continue  # released between the create and the read: try again
            if self._mine(there):  # a create resent by the backend after a lost reply
                return Claim(there)
            return Held(there)
        there = self.read_claim(key)
        if there is None:
            raise RemoteError(
                f"remote {self.url}: the claim {name} exists but cannot be read",
                url=self.url,
                operation="claim",
                path=name,
                hint="look at it in the remote; remove it if no one is rendering that take",
            )
        return Held(there)

    def update_claim(self, claim: Claim, task_id: str) -> Claim:
        """Record the provider's task id in a claim this run holds.

        Raises:
            RemoteError: the remote failed, or the claim is no longer this run's.
        """
        name = self.claim_name(claim.key)
        there = self.read_claim(claim.key)
        if there is not None and not self._mine(there):
            raise RemoteError(
                f"remote {self.url}: the claim on shot {claim.info.shot} was taken over by "
                f"{there.host} (pid {there.pid}); task {task_id} is this run's all the same",
                url=self.url,
                operation="claim",
                path=name,
            )
        updated = Claim(replace(claim.info, task_id=task_id))
        self._write(name, canonical_json(updated.info.to_json()))
        return updated

    def release(self, claim: Claim) -> None:
        """Remove a claim this run holds (a claim taken over by another run is left alone)."""
        name = self.claim_name(claim.key)
        there = self.read_claim(claim.key)
        if there is None or not self._mine(there):
            return
        self._retry("delete", name, lambda: self._rm(self._path(name)))

    def take_over(
        self, key: str, *, reason: str, expected: ClaimInfo | None = None
    ) -> Claim | None:
        """Make the claim on ``key`` this run's (keeping its provider, task id, shot and take;
        recording who took it over, from whom, why); ``None`` when another run takes it over
        first (:func:`~storyboard.remote_base.win_take_over`) or the claim there is no longer
        ``expected`` (the one the caller found stale): the caller looks again.

        Raises:
            RemoteError: there is no claim to take over, or the remote failed.
        """
        name = self.claim_name(key)
        old = self.read_claim(key)
        if old is None:
            raise RemoteError(
                f"remote {self.url}: there is no claim on {key[:12]}… to take over",
                url=self.url,
                operation="take over",
                path=name,
                hint="run the same command again",
            )
        if expected is not None and (old.run_id, old.since) != (expected.run_id, expected.since):
            return None
        now = time.time()
        note = canonical_json(
            {"host": self.host, "pid": self.pid, "run_id": self.run_id, "at": now}
        )

        def create(marker: str, data: bytes) -> None:
            self._retry("claim", marker, functools.partial(self._create, self._path(marker), data))

        if not win_take_over(key, old, self.run_id, note, create, self._read, TAKE_OVER_GRACE):
            return None
        record = (
            f"taken over by {self.host} (pid {self.pid}, run {self.run_id}) at "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))} from {old.host} "
            f"(pid {old.pid}, run {old.run_id}): {reason}"
        )
        info = replace(
            old, host=self.host, pid=self.pid, run_id=self.run_id, since=now,
            deadline=now + max(old.deadline - old.since, 0.0), taken_over=record,
        )  # fmt: skip
        self._write(name, canonical_json(info.to_json()))
        return Claim(info)

    def delete_claim(self, key: str) -> None:
        """Remove the claim on ``key`` whoever holds it (once its clip is in the remote)."""
        name = self.claim_name(key)
        self._retry("delete", name, lambda: self._rm(self._path(name)))
