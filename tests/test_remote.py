"""The remote store (issue 12 item 3 and 4): transfers and claims, on both backends.

Every test runs against a real moto S3 server on loopback (through s3fs) and against a shared
folder (``remote_spot`` is parametrized over both, see ``tests/s3server.py``). Clips are a few
bytes: the remote moves bytes named by their sha256 and never looks inside them.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
import s3server
from s3server import AWS_KEY_ID, AWS_SECRET, RemoteSpot

from storyboard import remote as remote_module
from storyboard.cache import ClipEntry, Provenance, Store
from storyboard.hashing import sha256_bytes
from storyboard.project import RemoteConfig
from storyboard.remote import (
    Claim,
    ClaimInfo,
    ClaimsUnsupported,
    Held,
    Remote,
    RemoteCorrupt,
    RemoteUnavailable,
    TransferEvent,
)

# The remote fixtures (see tests/s3server.py), made visible to this module's tests.
s3_service, aws_env, s3_remote = s3server.s3_service, s3server.aws_env, s3server.s3_remote
folder_remote, remote_spot = s3server.folder_remote, s3server.remote_spot

KEY = "a1" + "0" * 62
_R = TypeVar("_R")


def _key(n: int) -> str:
    return sha256_bytes(f"key {n}".encode())


def _store(root: Path) -> Store:
    return Store(root / ".storyboard", root / "board.yaml")


def _clip(store: Store, key: str, data: bytes, *, shot: str = "kite", take: int = 1) -> ClipEntry:
    """A stored "clip" of ``data`` (the remote never looks inside)."""
    part = store.tmp_dir() / f"{key}.part.mp4"
    part.write_bytes(data)
    info = Provenance(provider="qingbo", model="skyreels-v4-fast", task_id=f"task-{key[:6]}")
    return store.put(key, part, seconds=1.5, shot=shot, take=take, provenance=info)


def _open(spot: RemoteSpot) -> Remote:
    return Remote.open(spot.config())


@pytest.fixture
def stores(tmp_path: Path) -> tuple[Store, Store]:
    return _store(tmp_path / "machine-a"), _store(tmp_path / "machine-b")


# -- transfers -------------------------------------------------------------------------------


def test_push_then_pull_moves_a_clip_verified(
    remote_spot: RemoteSpot, stores: tuple[Store, Store]
) -> None:
    a, b = stores
    entry = _clip(a, KEY, b"clip bytes " * 50)
    remote = _open(remote_spot)
    assert remote.push_clip(a, entry) is True
    held = remote_spot.files()
    obj = f"objects/{entry.digest[:2]}/{entry.digest}.mp4"
    assert set(held) == {obj, f"keys/a1/{KEY}.json"}
    assert held[obj] == entry.path.read_bytes()
    record = json.loads(held[f"keys/a1/{KEY}.json"])
    assert record["sha256"] == record["digest"] == entry.digest
    assert record["size"] == entry.size and record["info"]["task_id"] == f"task-{KEY[:6]}"
    assert remote.push_clip(a, entry) is False  # content-addressed: nothing to send again
    assert remote.has_object(entry.digest) and not remote.has_object("f" * 64)

    pulled = remote.pull_clip(b, KEY)
    assert pulled is not None and pulled.digest == entry.digest
    assert pulled.path.read_bytes() == entry.path.read_bytes()
    again, made = b.lookup(KEY), a.lookup(KEY)
    assert again is not None and made is not None
    assert again.provenance == made.provenance and made.provenance.time  # its time included
    assert (again.seconds, again.shot, again.take) == (1.5, "kite", 1)
    assert remote.pull_clip(b, "b2" + "0" * 62) is None  # the remote does not have it
    assert not list((b.root / "tmp").iterdir())


def test_a_corrupt_remote_object_is_refused_not_adopted_and_a_push_puts_it_right(
    remote_spot: RemoteSpot, stores: tuple[Store, Store]
) -> None:
    a, b = stores
    data = b"the real clip " * 40
    entry = _clip(a, KEY, data)
    remote = _open(remote_spot)
    remote.push_clip(a, entry)
    obj = f"objects/{entry.digest[:2]}/{entry.digest}.mp4"
    remote_spot.write(obj, data[:-4] + b"EVIL")  # same size, other bytes

    with pytest.raises(RemoteCorrupt) as caught:
        remote.pull_clip(b, KEY)
    assert caught.value.path == obj and "refused" in str(caught.value)
    assert b.lookup(KEY) is None
    assert not b.object_path(entry.digest).exists()
    assert not [p for p in (b.root / "tmp").rglob("*") if p.is_file()]
    assert obj not in remote_spot.files()  # its name proved it wrong: removed

    assert remote.push_clip(a, entry) is True  # the object is sent again
    pulled = remote.pull_clip(b, KEY)
    assert pulled is not None and pulled.path.read_bytes() == data


def test_a_key_record_that_cannot_be_read_is_refused(
    remote_spot: RemoteSpot, stores: tuple[Store, Store]
) -> None:
    a, b = stores
    entry = _clip(a, KEY, b"x" * 100)
    remote = _open(remote_spot)
    remote.push_clip(a, entry)
    record = json.loads(remote_spot.read(f"keys/a1/{KEY}.json"))
    record["sha256"] = "0" * 64  # disagrees with the digest it names
    remote_spot.write(f"keys/a1/{KEY}.json", json.dumps(record).encode())
    with pytest.raises(RemoteCorrupt):
        remote.pull_clip(b, KEY)
    assert b.lookup(KEY) is None


def test_a_clip_corrupt_in_the_local_store_is_not_pushed(
    remote_spot: RemoteSpot, stores: tuple[Store, Store]
) -> None:
    a, _ = stores
    entry = _clip(a, KEY, b"y" * 100)
    entry.path.write_bytes(b"z" * 100)
    with pytest.raises(RemoteCorrupt):
        _open(remote_spot).push_clip(a, entry)
    assert remote_spot.files() == {}


def test_transfers_resume_after_an_interruption(
    remote_spot: RemoteSpot, stores: tuple[Store, Store]
) -> None:
    a, b = stores
    entries = [_clip(a, _key(n), bytes([n]) * (200 + n), shot=f"s{n}") for n in range(6)]
    remote = _open(remote_spot)
    # An interrupted push: two clips went through, a third object only half, no record.
    first = remote.push_many(a, entries[:2], jobs=2)
    assert (first.sent, first.skipped, first.failed) == (2, 0, ())
    half = entries[2]
    remote_spot.write(Remote.object_name(half.digest), half.path.read_bytes()[:50])

    seen: list[TransferEvent] = []
    report = remote.push_many(a, entries, jobs=4, on_progress=seen.append)
    assert (report.sent, report.skipped, report.failed) == (4, 2, ())
    assert report.bytes == sum(e.size for e in entries[2:])
    assert sorted(e.done for e in seen) == list(range(1, 7)) and {e.total for e in seen} == {6}
    assert remote.list_objects() == {e.digest: e.size for e in entries}
    assert remote.list_keys() == {e.key for e in entries}

    # An interrupted pull left a partial download behind; pulling again fetches everything.
    (b.tmp_dir() / "pull-leftover.part.mp4").write_bytes(b"half")
    assert remote.pull_clip(b, entries[0].key) is not None
    pulled = remote.pull_many(b, [e.key for e in entries] + [_key(99)], jobs=4)
    assert (pulled.fetched, pulled.skipped, pulled.missing) == (5, 1, (_key(99),))
    assert pulled.bytes == sum(e.size for e in entries[1:])
    for e in entries:
        got = b.verify(e.key)
        assert got is not None and got.digest == e.digest


def test_deletes_and_listings(remote_spot: RemoteSpot, stores: tuple[Store, Store]) -> None:
    a, _ = stores
    entry = _clip(a, KEY, b"q" * 64)
    remote = _open(remote_spot)
    remote.push_clip(a, entry)
    remote_spot.write("objects/zz/not-a-clip.txt", b"?")  # other names are not objects
    assert remote.list_objects() == {entry.digest: 64}
    remote.delete_key(KEY)
    remote.delete_object(entry.digest)
    remote.delete_object(entry.digest)  # nothing there: nothing happens
    assert remote.list_objects() == {} and remote.list_keys() == set()


# -- claims ----------------------------------------------------------------------------------


def _race(racers: list[Remote], call: Callable[[Remote], _R]) -> list[_R]:
    """``call`` on every racer at once (a barrier lines their threads up): the outcomes, in
    the racers' order (an exception in any racer is raised here)."""
    start = threading.Barrier(len(racers))

    def one(remote: Remote) -> _R:
        start.wait(timeout=60)
        return call(remote)

    with ThreadPoolExecutor(max_workers=len(racers)) as pool:
        return list(pool.map(one, racers, timeout=60))


def test_a_claim_race_has_exactly_one_winner(remote_spot: RemoteSpot) -> None:
    racers = [_open(remote_spot) for _ in range(8)]
    outcomes = _race(
        racers,
        lambda remote: remote.claim(
            KEY, provider="wavespeed", shot="kite", storyboard="a.yaml", deadline_s=60
        ),
    )
    winners = [o for o in outcomes if isinstance(o, Claim)]
    assert len(winners) == 1 and len(outcomes) == 8
    run = winners[0].info.run_id
    assert {o.info.run_id for o in outcomes if isinstance(o, Held)} == {run}
    info = _open(remote_spot).read_claim(KEY)
    assert info is not None and info.run_id == run


def test_claim_update_release_and_take_over(remote_spot: RemoteSpot) -> None:
    mine, other = _open(remote_spot), _open(remote_spot)
    claim = mine.claim(KEY, provider="qingbo", shot="sea", storyboard="b.yaml", deadline_s=600)
    assert isinstance(claim, Claim) and claim.info.task_id is None
    claim = mine.update_claim(claim, "task-42")
    info = other.read_claim(KEY)
    assert info is not None and (info.task_id, info.shot, info.provider) == (
        "task-42", "sea", "qingbo"
    )  # fmt: skip
    assert info.deadline == pytest.approx(info.since + 600)
    assert not info.stale()

    held = other.claim(KEY, provider="qingbo", shot="sea", storyboard="b.yaml", deadline_s=600)
    assert isinstance(held, Held) and held.info.task_id == "task-42"
    other.release(Claim(held.info))  # not its claim: left alone
    assert mine.read_claim(KEY) is not None

    taken = other.take_over(KEY, reason="--force sea")
    assert taken is not None
    assert taken.info.run_id == other.run_id and taken.info.task_id == "task-42"
    assert "--force sea" in taken.info.taken_over and mine.run_id in taken.info.taken_over
    mine.release(claim)  # taken over: the old holder's release leaves it
    assert other.read_claim(KEY) == taken.info
    other.release(taken)
    assert other.read_claim(KEY) is None
    again = mine.claim(KEY, provider="qingbo", shot="sea", storyboard="b.yaml", deadline_s=1)
    assert isinstance(again, Claim)


def test_a_take_over_race_has_exactly_one_winner(remote_spot: RemoteSpot) -> None:
    # A run claimed the key and died before it submitted (no task id): two machines that
    # both --force it must not both submit (WaveSpeed has no idempotency key).
    gone = _open(remote_spot)
    stale = gone.claim(KEY, provider="wavespeed", shot="kite", storyboard="a.yaml", deadline_s=60)
    assert isinstance(stale, Claim)
    racers = [_open(remote_spot) for _ in range(6)]
    # What each run judged stale (as the gate does), before they all take it over at once.
    seen = {id(remote): remote.read_claim(KEY) for remote in racers}
    reason = "--force kite: past its deadline"
    outcomes = _race(
        racers, lambda remote: remote.take_over(KEY, reason=reason, expected=seen[id(remote)])
    )
    assert len(outcomes) == len(racers)
    winners = [o for o in outcomes if o is not None]
    assert len(winners) == 1  # the others look again, and find the winner's live claim
    info = _open(remote_spot).read_claim(KEY)
    assert info is not None and info.run_id == winners[0].info.run_id
    # If the winner dies too, its claim is a new one: it can be taken over in turn.
    assert _open(remote_spot).take_over(KEY, reason="--force kite: gone") is not None


def test_a_take_over_whose_taker_died_halfway_can_be_made_again(
    remote_spot: RemoteSpot, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = _open(remote_spot)
    assert isinstance(
        gone.claim(KEY, provider="wavespeed", shot="kite", storyboard="a.yaml", deadline_s=60),
        Claim,
    )
    first, second = _open(remote_spot), _open(remote_spot)

    def lost(relative: str, data: bytes) -> None:
        raise OSError("the machine died here")

    monkeypatch.setattr(first, "_write", lost)  # it wins the take-over, then dies
    with pytest.raises(OSError):
        first.take_over(KEY, reason="--force kite")
    assert second.take_over(KEY, reason="--force kite") is None  # it may still be writing
    monkeypatch.setattr(remote_module, "TAKE_OVER_GRACE", 0.0)  # ... until it is past doing so
    taken = second.take_over(KEY, reason="--force kite")
    assert taken is not None and _open(remote_spot).read_claim(KEY) == taken.info


def test_a_claim_is_stale_past_its_deadline_or_when_its_process_is_gone(
    remote_spot: RemoteSpot,
) -> None:
    remote = _open(remote_spot)
    claim = remote.claim(KEY, provider="qingbo", shot="sea", storyboard="b.yaml", deadline_s=30)
    assert isinstance(claim, Claim)
    info = claim.info
    assert not info.stale(info.since + 29) and info.stale(info.deadline + 1)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = ClaimInfo(**{**info.__dict__, "pid": int(done.stdout)})
    assert dead.stale(info.since) and dead.gone()
    elsewhere = ClaimInfo(**{**dead.__dict__, "host": "another-machine"})
    assert not elsewhere.stale(info.since)  # another host's pid says nothing here
    assert elsewhere.stale(info.deadline + 1)


def test_claims_keep_credentials_out_of_the_remote(
    s3_remote: RemoteSpot, stores: tuple[Store, Store]
) -> None:
    a, _ = stores
    remote = _open(s3_remote)
    remote.push_clip(a, _clip(a, KEY, b"w" * 80))
    claim = remote.claim(KEY, provider="qingbo", shot="s", storyboard="b.yaml", deadline_s=9)
    assert isinstance(claim, Claim)
    remote.update_claim(claim, "task-1")
    for name, data in s3_remote.files().items():
        for secret in (AWS_SECRET, AWS_KEY_ID):
            assert secret.encode() not in data, name


def test_a_backend_without_atomic_create_holds_no_claims() -> None:
    remote = Remote.open(RemoteConfig(url="memory://team-remote"))
    remote.check()  # it can move clips
    with pytest.raises(ClaimsUnsupported) as caught:
        remote.check(claims=True)
    assert caught.value.exit_code == 2 and "--no-remote" in (caught.value.hint() or "")


# -- reaching it -----------------------------------------------------------------------------


@pytest.mark.slow  # the backend's retries take a few seconds
def test_a_remote_that_cannot_be_reached_is_reported_without_credentials(
    aws_env: None,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    remote = Remote.open(
        RemoteConfig(
            url="s3://team-bucket/dawn", options={"endpoint_url": f"http://127.0.0.1:{port}"}
        )
    )
    started = time.monotonic()
    with pytest.raises(RemoteUnavailable) as caught:
        remote.check(claims=True)
    assert time.monotonic() - started < 30
    error = caught.value
    assert error.exit_code == 2 and error.url == "s3://team-bucket/dawn"
    assert "s3://team-bucket/dawn" in str(error) and error.hint()
    for secret in (AWS_SECRET, AWS_KEY_ID):
        assert secret not in str(error) and secret not in (error.hint() or "")


def test_a_missing_folder_or_bucket_is_reported(
    tmp_path: Path, s3_service: s3server.S3Server, aws_env: None
) -> None:
    missing = Remote.open(RemoteConfig(url=str(tmp_path / "not-mounted")))
    with pytest.raises(RemoteUnavailable) as caught:
        missing.check()
    assert "mkdir -p" in (caught.value.hint() or "")
    bucket = Remote.open(
        RemoteConfig(
            url="s3://no-such-bucket-here/x", options={"endpoint_url": s3_service.endpoint}
        )
    )
    with pytest.raises(RemoteUnavailable, match="does not exist"):
        bucket.check()


def test_a_url_with_user_information_is_shown_without_it(tmp_path: Path) -> None:
    remote = Remote.open(RemoteConfig(url=f"file://{tmp_path}"))
    remote.check(claims=True)
    assert Remote.open(RemoteConfig(url="memory://user:pw@bucket/x")).url == "memory://bucket/x"


def test_a_backend_that_is_not_installed_is_named() -> None:
    from fsspec.registry import register_implementation

    # A protocol whose package is missing, as gs:// is without gcsfs.
    register_implementation("sbmissing", "no_such_backend_pkg.FileSystem", clobber=True)
    with pytest.raises(RemoteUnavailable) as caught:
        Remote.open(RemoteConfig(url="sbmissing://team/x"))
    assert caught.value.exit_code == 2 and "is not installed" in str(caught.value)
    assert "sbmissing://" in (caught.value.hint() or "")
