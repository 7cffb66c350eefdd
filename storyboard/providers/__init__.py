"""The provider table: one entry per provider, the only place a provider is known by name.

Every fact the rest of storyboard needs about a provider is data here: its label, how to make
its client (a lazy factory: importing this table imports neither httpx nor a provider
module), the variable holding its API key, how many tasks it runs at once by default, how
long it serves a finished output, whether a resent submit is safe, and whether it can host
local files for the others (its :class:`Uploader`). Which provider runs a model is the
model catalogue's fact (:attr:`storyboard.catalog.ModelSpec.provider`).

Adding a provider touches this table, the catalogue and the provider's own module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from storyboard.catalog import PREVIEW_PROVIDER
from storyboard.errors import ProviderError

if TYPE_CHECKING:
    from storyboard.providers.base import Provider

__all__ = [
    "PROVIDERS",
    "ProviderEntry",
    "ProviderSetup",
    "Uploader",
    "default_concurrency",
    "entry",
    "hosts",
    "key_vars",
    "own_uploader",
]

#: Tasks in flight per provider when neither the storyboard nor ``--jobs`` says.
FALLBACK_CONCURRENCY = 2


@runtime_checkable
class Uploader(Protocol):
    """Hosts a local file and gives a URL every provider can fetch (WaveSpeed's media API)."""

    async def upload(self, path: Path, content_type: str) -> tuple[str, float]:
        """``(url, expires_at)``: the file's URL and when it stops working (Unix seconds)."""
        ...


@dataclass(frozen=True)
class ProviderSetup:
    """What a factory may use to make a client.

    Args:
        environ: The environment the key and base URL are read from.
        transport: The network (an ``httpx.AsyncBaseTransport``; the emulator's in tests),
            or ``None`` for the real one.
        workdir: A folder for local work (the preview backend renders there).
    """

    environ: Mapping[str, str] = field(default_factory=dict)
    transport: Any = None
    workdir: Path | None = None


@dataclass(frozen=True)
class ProviderEntry:
    """One provider, as data.

    Attributes:
        name: Its name in the catalogue, the journal, the lock and ``render.concurrency``.
        label: Its name for people ("WaveSpeed").
        factory: Makes its client; imports the provider's module only when called.
        key_var: The variable holding its API key (``None``: it needs none).
        concurrency: Tasks in flight by default.
        output_lifetime: Seconds it serves a finished task's output (0: it does not).
        idempotent_submit: A resent submit can never create a second task.
        uploader: Given its client, the :class:`Uploader` it offers (``None``: it cannot
            host files and takes URLs only).
    """

    name: str
    label: str
    factory: Callable[[ProviderSetup], Provider]
    key_var: str | None
    concurrency: int
    output_lifetime: float
    idempotent_submit: bool
    uploader: Callable[[Provider], Uploader] | None = None

    @property
    def can_host_files(self) -> bool:
        """Whether it can host a local file and give a URL other providers can fetch."""
        return self.uploader is not None

    @property
    def output_lifetime_text(self) -> str:
        """The output lifetime in words: "7 days", "24 h"."""
        seconds = self.output_lifetime
        if seconds >= 2 * 86_400 and seconds % 86_400 == 0:
            return f"{seconds / 86_400:g} days"
        return f"{seconds / 3600:g} h"


def _wavespeed(setup: ProviderSetup) -> Provider:
    from storyboard.providers.wavespeed import WaveSpeedProvider

    return WaveSpeedProvider.from_env(environ=setup.environ, transport=setup.transport)


def _qingbo(setup: ProviderSetup) -> Provider:
    from storyboard.providers.qingbo import QingboProvider

    return QingboProvider.from_env(environ=setup.environ, transport=setup.transport)


def _preview(setup: ProviderSetup) -> Provider:
    from storyboard.providers.preview import PreviewProvider

    if setup.workdir is None:
        raise ProviderError("the preview backend needs a work folder", provider=PREVIEW_PROVIDER)
    return PreviewProvider(setup.workdir)


def own_uploader(client: Provider) -> Uploader:
    """The client itself, when it hosts files (its class has ``upload``)."""
    if not isinstance(client, Uploader):
        raise ProviderError(f"the {client.name} client cannot upload", provider=client.name)
    return client


#: Every provider by name, in the order help and messages list them.
PROVIDERS: dict[str, ProviderEntry] = {
    e.name: e
    for e in (
        ProviderEntry(
            name="wavespeed",
            label="WaveSpeed",
            factory=_wavespeed,
            key_var="WAVESPEED_API_KEY",
            concurrency=2,
            output_lifetime=7 * 86_400.0,  # outputs and uploads are kept 7 days (PROVIDERS §1.6)
            idempotent_submit=False,  # no idempotency key: a lost reply is looked for
            uploader=own_uploader,  # the media API (PROVIDERS §1.6)
        ),
        ProviderEntry(
            name="qingbo",
            label="Qingbo",
            factory=_qingbo,
            key_var="QINGBO_API_KEY",
            concurrency=5,  # at most 5 queued tasks per account (PROVIDERS §3)
            output_lifetime=24 * 3600.0,  # result links are valid 24 h (PROVIDERS §3.3)
            idempotent_submit=True,  # Idempotency-Key: the same key returns the original task
        ),
        ProviderEntry(
            name=PREVIEW_PROVIDER,
            label="the preview backend",
            factory=_preview,
            key_var=None,
            concurrency=2,
            output_lifetime=0.0,  # local: nothing is served
            idempotent_submit=True,  # local and free: a repeat costs nothing
        ),
    )
}


def entry(name: str) -> ProviderEntry:
    """The entry of a provider.

    Raises:
        ProviderError: no provider has that name.
    """
    found = PROVIDERS.get(name)
    if found is None:
        raise ProviderError(f"unknown provider {name!r}", provider=name)
    return found


def default_concurrency(name: str) -> int:
    """Tasks in flight for ``name`` when nothing else says (2 for a name not in the table)."""
    found = PROVIDERS.get(name)
    return found.concurrency if found is not None else FALLBACK_CONCURRENCY


def hosts() -> list[ProviderEntry]:
    """The providers that can host local files, in table order."""
    return [e for e in PROVIDERS.values() if e.can_host_files]


def key_vars() -> tuple[str, ...]:
    """Every API key variable of the table, in table order."""
    return tuple(e.key_var for e in PROVIDERS.values() if e.key_var)
