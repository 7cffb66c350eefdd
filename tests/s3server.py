"""Remotes for tests: a real S3 server (moto's server mode) on loopback, and a shared folder.

Nothing here is a stub: :func:`s3_server` starts moto's own HTTP server on 127.0.0.1 with an
ephemeral port, and the code under test reaches it through s3fs exactly as it would reach AWS,
MinIO or R2 (``endpoint_url`` in the ``[remote]`` table). The folder remote is a plain folder,
as on a shared drive.

Fixtures; a test module makes the ones it uses visible by assignment (ruff reads an
imported fixture used as an argument as a redefinition)::

    import s3server

    s3_service, aws_env, s3_remote = s3server.s3_service, s3server.aws_env, s3server.s3_remote
    folder_remote, remote_spot = s3server.folder_remote, s3server.remote_spot


* ``s3_service`` (session): one moto server for the whole test session;
* ``aws_env``: fake credentials in the environment (and nothing of the machine's AWS setup);
* ``s3_remote``: a fresh bucket on that server, as a :class:`RemoteSpot`;
* ``folder_remote``: a fresh shared folder, as a :class:`RemoteSpot`;
* ``remote_spot``: parametrized over both (``s3`` and ``folder``).

A :class:`RemoteSpot` knows its URL and backend options, writes the ``[remote]`` table of a
``storyboard.toml`` (:meth:`RemoteSpot.toml`), lists and reads what the remote holds (to check
what was sent), and tampers with it (to check what is refused). Buckets are created with boto3:
s3fs's ``mkdir`` sends a location constraint that moto refuses for us-east-1.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

__all__ = [
    "AWS_KEY_ID",
    "AWS_SECRET",
    "FAKE_AWS_ENV",
    "RemoteSpot",
    "S3Server",
    "aws_env",
    "folder_remote",
    "folder_spot",
    "remote_spot",
    "s3_remote",
    "s3_server",
    "s3_service",
    "s3_spot",
]

#: Fake credentials, distinctive so that a search for them finds only a leak.
AWS_KEY_ID = "AKIAMOTOTESTQX93ZKLM"
AWS_SECRET = "moto-secret-Vt58Rw0pHnZr84Kd02Lq"
FAKE_AWS_ENV: dict[str, str] = {
    "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    "AWS_DEFAULT_REGION": "us-east-1",
}
# What of the machine's AWS setup could send a test elsewhere or lend it real credentials.
_AWS_MACHINE = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_CA_BUNDLE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@dataclass
class S3Server:
    """A running moto S3 server on loopback."""

    endpoint: str  # http://127.0.0.1:PORT
    server: Any = field(repr=False)

    def client(self) -> Any:
        """A boto3 S3 client of this server (fake credentials given explicitly)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=AWS_KEY_ID,
            aws_secret_access_key=AWS_SECRET,
            region_name="us-east-1",
        )

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh unique name unless given) and return its name."""
        bucket = name or f"sb-test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """Start moto's server on 127.0.0.1 with an ephemeral port; stop it on exit."""
    from moto.server import ThreadedMotoServer

    # The server logs every request through werkzeug; tests want quiet stderr.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(f"http://{host}:{port}", server)
    finally:
        server.stop()


@dataclass(frozen=True)
class RemoteSpot:
    """A remote a test renders against: its URL, backend options and what it holds.

    Attributes:
        kind: ``s3`` (moto over HTTP) or ``folder`` (a shared folder).
        url: the remote's URL as ``storyboard.toml`` names it.
        options: the backend's options (``endpoint_url`` for S3), as in the ``[remote]`` table.
        env: what a subprocess needs in its environment to reach it (credentials).
        secrets: values that must never be written anywhere (credentials).
    """

    kind: Literal["s3", "folder"]
    url: str
    options: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()

    def toml(self, **settings: Any) -> str:
        """The ``[remote]`` table naming this remote, with ``settings`` (``pull = false``...)."""
        lines = ["[remote]", f"url = {_toml_value(self.url)}"]
        lines += [f"{name} = {_toml_value(value)}" for name, value in self.options.items()]
        lines += [f"{name} = {_toml_value(value)}" for name, value in settings.items()]
        return "\n".join(lines) + "\n"

    def config(self, **settings: Any) -> Any:
        """This remote as a :class:`storyboard.project.RemoteConfig`."""
        from storyboard.project import RemoteConfig

        return RemoteConfig(url=self.url, options=dict(self.options), **settings)

    def fs(self) -> tuple[Any, str]:
        """An fsspec file system of the remote and the remote's root path in it."""
        from fsspec.core import url_to_fs

        options: dict[str, Any] = dict(self.options)
        if self.kind == "s3":
            options.update(skip_instance_cache=True, use_listings_cache=False)
        fs, root = url_to_fs(self.url, **options)
        return fs, str(root).rstrip("/")

    def files(self) -> dict[str, bytes]:
        """Everything the remote holds: path relative to its root -> bytes."""
        fs, root = self.fs()
        try:
            found = fs.find(root)
        except FileNotFoundError:
            return {}
        out: dict[str, bytes] = {}
        for path in sorted(found):
            try:
                out[str(path)[len(root) + 1 :]] = bytes(fs.cat_file(path))
            except FileNotFoundError:
                continue  # removed since the listing (a run is using the remote right now)
        return out

    def names(self, folder: str = "") -> set[str]:
        """Paths (relative to the root) of the files under ``folder`` (``objects``, ``keys``...)."""
        return {name for name in self.files() if name.startswith(folder)}

    def read(self, relative: str) -> bytes:
        fs, root = self.fs()
        return bytes(fs.cat_file(f"{root}/{relative}"))

    def write(self, relative: str, data: bytes) -> None:
        """Put ``data`` at ``relative`` (replacing what is there): to tamper with the remote."""
        fs, root = self.fs()
        path = f"{root}/{relative}"
        if self.kind == "folder":
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, data)

    def delete(self, relative: str) -> None:
        fs, root = self.fs()
        fs.rm_file(f"{root}/{relative}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"no TOML for {value!r}")


def s3_spot(server: S3Server, bucket: str | None = None, prefix: str = "team") -> RemoteSpot:
    """A fresh bucket (or ``bucket``) on ``server`` as a remote under ``prefix``."""
    name = server.create_bucket(bucket)
    return RemoteSpot(
        "s3",
        f"s3://{name}/{prefix}",
        {"endpoint_url": server.endpoint},
        env=dict(FAKE_AWS_ENV),
        secrets=(AWS_SECRET, AWS_KEY_ID),
    )


def folder_spot(folder: Path) -> RemoteSpot:
    """A shared folder (created) as a remote, named by its plain path."""
    folder.mkdir(parents=True, exist_ok=True)
    return RemoteSpot("folder", str(folder))


@pytest.fixture(scope="session")
def s3_service() -> Iterator[S3Server]:
    """One moto S3 server on loopback for the whole session (tests use fresh buckets)."""
    with s3_server() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fake AWS credentials in the environment, and none of the machine's AWS setup."""
    for name in _AWS_MACHINE:
        monkeypatch.delenv(name, raising=False)
    nothing = tmp_path_factory.mktemp("no-aws-config") / "absent"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(nothing))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nothing))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3_remote(s3_service: S3Server, aws_env: None) -> RemoteSpot:
    """A fresh bucket on the session's moto server, as a remote under ``team/``."""
    return s3_spot(s3_service)


@pytest.fixture
def folder_remote(tmp_path_factory: pytest.TempPathFactory) -> RemoteSpot:
    """A fresh shared folder as a remote."""
    return folder_spot(tmp_path_factory.mktemp("shared-drive") / "storyboard-remote")


@pytest.fixture(params=["s3", "folder"])
def remote_spot(request: pytest.FixtureRequest) -> RemoteSpot:
    """Each remote backend in turn: a moto S3 bucket, then a shared folder."""
    name = "s3_remote" if request.param == "s3" else "folder_remote"
    spot: RemoteSpot = request.getfixturevalue(name)
    return spot
