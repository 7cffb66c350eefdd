"""The project a storyboard belongs to: where its store is, and the team's remote store.

A project is a folder tree whose storyboards share one store (clips, key records, journal):
the nearest folder upwards from the storyboard's folder that holds ``storyboard.toml`` (the
project's config file) or ``.git`` (a folder, or the ``.git`` file of a worktree or
submodule), else the storyboard's own folder. Every storyboard in a repository then finds a
clip another one paid for.

``storyboard.toml`` (TOML; every table is optional)::

    [store]
    path = ".storyboard"                  # relative to the project root (inside it), or absolute

    [remote]
    url = "s3://studio-renders/dawn"      # s3://, gs://, az://, file:///..., or a folder path
    endpoint_url = "http://127.0.0.1:9000"  # any other key is the backend's own option
    pull = true                           # render looks in the remote before paying for a key
    push = true                           # render pushes each clip once it is stored

Credentials never live in this file (it is committed): a ``[remote]`` holding ``key``,
``secret``, ``token``, ``password`` and the like is refused; the backend finds its usual
credentials itself (the environment, ``~/.aws``, a ``profile``).

Where the store is: ``$STORYBOARD_CACHE`` when set, else ``[store] path``, else
``<root>/.storyboard``. :func:`find_project` is called for every store lookup, so the parsed
config is memoised by the file's (path, mtime, size); the upward walk is a few ``stat`` calls.
This module is kernel: it imports nothing of storyboard but the errors and the did-you-mean.
"""

from __future__ import annotations

import copy
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from storyboard.errors import StoreError, UsageError
from storyboard.suggest import did_you_mean

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_STORE",
    "MOVED_NOTE",
    "AdoptionError",
    "Project",
    "ProjectConfigError",
    "RemoteConfig",
    "find_project",
    "legacy_store",
    "moved_note",
]

#: The project's config file; its folder is the project root.
CONFIG_FILE = "storyboard.toml"
#: The store's folder name at the project root (when neither the config nor the environment
#: names another place).
DEFAULT_STORE = ".storyboard"
# A config bigger than this is no config anyone wrote by hand.
_MAX_CONFIG_BYTES = 256 * 1024

# What a folder holds once it has been a store (one of them is enough).
_STORE_MARKS = frozenset(
    {"objects", "keys", "journal.sqlite", "digests.json", "media.json", "cuts", "shots"}
)
_TABLES = ("store", "remote")
_STORE_KEYS = ("path",)
_REMOTE_KEYS = ("url", "pull", "push")

# Option names that carry a secret (compared lower case, with '-' as '_'), in any backend:
# s3fs (key, secret, token, aws_*), gcsfs (token), adlfs (account_key, sas_token,
# connection_string, client_secret), and the generic ones.
_SECRET_NAMES = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "passwd",
        "passphrase",
        "credential",
        "credentials",
        "access_key",
        "secret_key",
        "access_key_id",
        "secret_access_key",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "session_token",
        "account_key",
        "sas_token",
        "connection_string",
        "client_secret",
        "private_key",
        "api_key",
        "auth",
        "authorization",
    }
)
_SECRET_ENDINGS = (
    "_secret",
    "_password",
    "_passwd",
    "_token",
    "_secret_key",
    "_access_key",
    "_account_key",
    "_private_key",
    "_api_key",
    "_credentials",
)


#: The note left in a store of an earlier version once it is adopted, naming the new store.
MOVED_NOTE = "MOVED"


class AdoptionError(StoreError):
    """A store of an earlier version beside a storyboard could not be moved into the
    project's store. What was not moved is still in the old store; the next run goes on.

    Attributes:
        legacy: the old store (``None`` when the lock for moving it was not had in time).
        store: the project's store.
        reason: what went wrong.
    """

    def __init__(
        self, legacy: Path | None, store: Path, reason: str, *, hint: str | None = None
    ) -> None:
        what = f"cannot move the store {legacy} into {store}" if legacy else f"{store} is busy"
        kept = "; what was not moved is still there" if legacy else ""
        super().__init__(f"{what}: {reason}{kept}")
        self.legacy = legacy
        self.store = store
        self.reason = reason
        self._hint = hint

    def hint(self) -> str | None:
        if self._hint is not None:
            return self._hint
        if self.legacy is None:
            return "wait for the other storyboard process to finish, then run the command again"
        return "free the space or fix the permissions, then run the command again"


class ProjectConfigError(UsageError):
    """``storyboard.toml`` cannot be used: it does not parse, has an unknown table or key, a
    value of the wrong type, a store path outside the project, or a credential (exit 2).

    Attributes:
        path: the config file.
        line: the line of the problem (1-based; the table's or the file's first line when
            the problem has no line of its own).
        problem: what is wrong, without the place (``str(error)`` is ``path:line: problem``).
    """

    def __init__(self, path: Path, line: int, problem: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path}:{line}: {problem}", hint=hint)
        self.path = path
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class RemoteConfig:
    """The project's remote store, as ``[remote]`` in ``storyboard.toml`` names it.

    Attributes:
        url: ``s3://bucket/prefix``, ``gs://…``, ``az://…``, ``file:///…`` or a folder path
            (a relative folder is made absolute against the project root).
        options: the backend's options (every other key of ``[remote]``, e.g.
            ``endpoint_url``), passed to fsspec; never a credential.
        pull: render looks in the remote before paying for a key.
        push: render pushes each clip once it is stored.
    """

    url: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    pull: bool = True
    push: bool = True


@dataclass(frozen=True)
class Project:
    """Where a storyboard's project is and what its config says.

    Attributes:
        root: the nearest folder upwards holding ``storyboard.toml`` or ``.git``, else the
            storyboard's folder.
        config: the ``storyboard.toml``, if the project has one.
        store: the store's folder: ``$STORYBOARD_CACHE``, else ``[store] path``, else
            ``root/.storyboard``.
        remote: the remote store, if the config names one.
    """

    root: Path
    config: Path | None
    store: Path
    remote: RemoteConfig | None


@dataclass(frozen=True)
class _Config:
    """What a ``storyboard.toml`` says (parsed once per file version)."""

    store: Path | None
    remote: RemoteConfig | None


# Parsed configs by path, with the (mtime_ns, size, inode) they were parsed at.
_MEMO: dict[Path, tuple[tuple[int, int, int], _Config]] = {}
_MEMO_LOCK = threading.Lock()


def find_project(storyboard_path: Path) -> Project:
    """The project of the storyboard at ``storyboard_path``.

    The path is resolved the way :func:`storyboard.loader.storyboard_path` resolves it (links
    followed), so every spelling of one storyboard finds one project.

    Raises:
        ProjectConfigError: the project's ``storyboard.toml`` cannot be used (at its line).
    """
    try:
        folder = Path(storyboard_path).resolve().parent
    except (OSError, RuntimeError):  # a link loop: the loader reports it when it opens the file
        folder = Path(storyboard_path).absolute().parent
    root, config_path = _find_root(folder)
    config = _read_config(config_path, root) if config_path is not None else None
    env = os.environ.get("STORYBOARD_CACHE")
    if env:
        store = Path(env).expanduser().absolute()
    elif config is not None and config.store is not None:
        store = config.store
    else:
        store = root / DEFAULT_STORE
    remote = config.remote if config is not None else None
    if remote is not None:  # each caller gets its own options (a backend may change them)
        remote = replace(remote, options=MappingProxyType(copy.deepcopy(dict(remote.options))))
    return Project(root=root, config=config_path, store=store, remote=remote)


def _find_root(folder: Path) -> tuple[Path, Path | None]:
    """The project root above ``folder`` (itself included) and its config file, if any."""
    for candidate in (folder, *folder.parents):
        config = candidate / CONFIG_FILE
        if config.is_file():
            return candidate, config
        if os.path.lexists(candidate / ".git"):
            return candidate, None
    return folder, None


def _read_config(path: Path, root: Path) -> _Config:
    try:
        st = path.stat()
    except OSError as exc:
        raise ProjectConfigError(path, 1, f"cannot read it: {exc.strerror}") from exc
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    with _MEMO_LOCK:
        known = _MEMO.get(path)
    if known is not None and known[0] == stamp:
        return known[1]
    config = _parse(path, root, st.st_size)
    with _MEMO_LOCK:
        _MEMO[path] = (stamp, config)
    return config


def _parse(path: Path, root: Path, size: int) -> _Config:
    import tomllib

    if size > _MAX_CONFIG_BYTES:
        raise ProjectConfigError(path, 1, f"it is {size} bytes; a project config is a few lines")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ProjectConfigError(path, 1, f"cannot read it: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ProjectConfigError(path, line, "it is not UTF-8 text") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(found.group(1)) if found else 1
        problem = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc)) or "invalid TOML"
        raise ProjectConfigError(
            path, line, f"not valid TOML: {problem}", hint="see https://toml.io for the syntax"
        ) from exc
    return _Reader(path, root, text).config(data)


class _Reader:
    """Checks a parsed config, reporting each problem at its line of ``text``."""

    def __init__(self, path: Path, root: Path, text: str) -> None:
        self.path = path
        self.root = root
        self.lines = text.splitlines()

    def problem(
        self, where: tuple[str, ...], problem: str, hint: str | None = None
    ) -> ProjectConfigError:
        return ProjectConfigError(self.path, _line_of(self.lines, where), problem, hint=hint)

    def config(self, data: Mapping[str, Any]) -> _Config:
        for name, value in data.items():
            if name not in _TABLES:
                near = did_you_mean(name, _TABLES)
                raise self.problem(
                    (name,),
                    f"unknown {'table' if isinstance(value, dict) else 'key'} {name!r}",
                    near or "storyboard.toml holds a [store] and a [remote] table",
                )
            if not isinstance(value, dict):
                raise self.problem((name,), f"{name!r} must be a table: [{name}]")
        store = self._store(data["store"]) if "store" in data else None
        remote = self._remote(data["remote"]) if "remote" in data else None
        return _Config(store=store, remote=remote)

    def _store(self, table: Mapping[str, Any]) -> Path | None:
        for name in table:
            if name not in _STORE_KEYS:
                raise self.problem(
                    ("store", name),
                    f"unknown key {name!r} in [store]",
                    did_you_mean(name, _STORE_KEYS) or "[store] has one key: path",
                )
        raw = table.get("path")
        if raw is None:
            return None
        if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
            raise self.problem(("store", "path"), "[store] path must be a folder name (a string)")
        return self._store_path(raw)

    def _store_path(self, raw: str) -> Path:
        where = ("store", "path")
        given = Path(raw).expanduser()
        if given.is_absolute():
            return self._a_store(Path(os.path.normpath(given)), raw)
        target = Path(os.path.normpath(self.root / given))
        hint = (
            'keep the store inside the project, e.g. path = ".storyboard", or give an absolute path'
        )
        if not target.is_relative_to(self.root) or target == self.root:
            what = "is the project root itself" if target == self.root else "leaves the project"
            raise self.problem(where, f"[store] path {raw!r} {what}", hint)
        # No link on the way may lead out of the project (a pull request can add links too).
        real_root = Path(os.path.realpath(self.root))
        if not Path(os.path.realpath(target)).is_relative_to(real_root):
            raise self.problem(
                where, f"[store] path {raw!r} leads out of the project through a link", hint
            )
        return self._a_store(target, raw)

    def _a_store(self, target: Path, raw: str) -> Path:
        """``target`` unless it is something other than a store: the store cleans its
        ``tmp/`` and ``gc`` removes from it, so it never lands on someone's own folder."""
        try:
            names = {p.name for p in target.iterdir()} if target.is_dir() else None
        except OSError:
            names = None
        if target.exists() and names is None:
            raise self.problem(("store", "path"), f"[store] path {raw!r} is not a folder")
        if names and not names & _STORE_MARKS:
            raise self.problem(
                ("store", "path"),
                f"[store] path {raw!r} is a folder with other files in it, not a store",
                "name a new folder (storyboard creates it) or an existing store",
            )
        return target

    def _remote(self, table: Mapping[str, Any]) -> RemoteConfig:
        self._refuse_secrets(table, ("remote",))
        url = table.get("url")
        if url is None:
            raise self.problem(
                ("remote",),
                "[remote] has no url",
                'name the remote store, e.g. url = "s3://bucket/prefix"',
            )
        if not isinstance(url, str) or not url.strip() or "\0" in url:
            raise self.problem(("remote", "url"), "[remote] url must be a non-empty string")
        url = self._url(url.strip())
        flags: dict[str, bool] = {}
        for name in ("pull", "push"):
            value = table.get(name, True)
            if not isinstance(value, bool):
                raise self.problem(("remote", name), f"[remote] {name} must be true or false")
            flags[name] = value
        options: dict[str, Any] = {}
        for name, value in table.items():
            if name in _REMOTE_KEYS:
                continue
            near = did_you_mean(name, _REMOTE_KEYS)
            if near is not None:
                raise self.problem(
                    ("remote", name),
                    f"unknown key {name!r} in [remote]",
                    f"{near} (every other key is passed to the storage backend as an option)",
                )
            options[name] = self._option(value, ("remote", name))
        # Plain dicts here: find_project hands each caller its own copy.
        return RemoteConfig(url=url, options=options, pull=flags["pull"], push=flags["push"])

    def _url(self, url: str) -> str:
        scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/]*)", url)
        if scheme is None:  # a folder (a shared drive): relative to the project root
            return os.path.normpath(self.root / Path(url).expanduser())
        if ":" in scheme.group(2).rpartition("@")[0]:
            raise self.problem(
                ("remote", "url"),
                "[remote] url holds a password",
                "remove it from the URL; the backend reads its usual credentials"
                " (the environment, ~/.aws, a profile)",
            )
        return url

    def _option(self, value: Any, where: tuple[str, ...]) -> Any:
        """An option value as fsspec takes it: a string, number, boolean or table of those."""
        if isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, dict):
            return {name: self._option(inner, (*where, name)) for name, inner in value.items()}
        kind = "a list" if isinstance(value, list) else f"a {type(value).__name__}"
        raise self.problem(
            where,
            f"[remote] option {'.'.join(where[1:])!r} is {kind}",
            "an option is a string, a number, true/false, or a table of those",
        )

    def _refuse_secrets(self, table: Mapping[str, Any], where: tuple[str, ...]) -> None:
        for name, value in table.items():
            inner = (*where, name)
            if _is_secret(name):
                raise self.problem(
                    inner,
                    f"{'.'.join(inner[1:])!r} is a credential; storyboard.toml is committed,"
                    " so it never holds one",
                    "remove it; the backend reads its usual credentials (the environment, e.g."
                    " AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws, or profile = ...)",
                )
            if isinstance(value, dict):
                self._refuse_secrets(value, inner)


def _is_secret(name: str) -> bool:
    word = name.strip().lower().replace("-", "_")
    return word in _SECRET_NAMES or word.endswith(_SECRET_ENDINGS)


_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)
_PART = re.compile(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""")


def _parts(dotted: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in _PART.findall(dotted))


def _line_of(lines: list[str], where: tuple[str, ...]) -> int:
    """The first line (1-based) that defines ``where`` (a table or a key path), else the
    line that opens its nearest defined table, else 1."""
    for depth in range(len(where), 0, -1):
        target = where[:depth]
        table: tuple[str, ...] = ()
        for number, line in enumerate(lines, 1):
            header = _HEADER.match(line)
            if header is not None:
                table = _parts(header.group(1))
                if table[: len(target)] == target:
                    return number
                continue
            key = _KEY.match(line)
            if key is not None and (*table, *_parts(key.group(1)))[: len(target)] == target:
                return number
    return 1


def legacy_store(storyboard_path: Path, store: Path) -> Path | None:
    """The store an earlier version kept beside the storyboard, if it is still to be adopted
    into ``store`` (the project's): ``.storyboard/`` in the storyboard's folder, a real
    folder (a link in its place is never followed: a pull request could point it at anyone's
    files), not ``store`` itself, and without a :data:`MOVED_NOTE`.

    Only into the project's own store: with ``$STORYBOARD_CACHE`` set (a folder chosen for
    one run, a throwaway one say) the old store stays where it is.
    """
    if os.environ.get("STORYBOARD_CACHE"):
        return None
    try:
        legacy = Path(storyboard_path).resolve().parent / DEFAULT_STORE
    except (OSError, RuntimeError):
        return None
    if legacy.is_symlink() or not legacy.is_dir() or (legacy / MOVED_NOTE).exists():
        return None
    if os.path.realpath(legacy) == os.path.realpath(store):
        return None
    return legacy


def moved_note(store: Path) -> str:
    """The text of the :data:`MOVED_NOTE` left in an adopted store."""
    return (
        "This store moved: storyboard keeps one store per project now.\n"
        f"Its clips, key records and journalled tasks are in {store}\n"
        "Files still here were in that store already; this folder can be deleted.\n"
    )
