"""The emulator as an ``httpx.MockTransport`` for unit tests (httpx imported lazily)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol, cast

from storyboard.testing.emulator.records import EmulatorResponse

if TYPE_CHECKING:
    import httpx


class Handles(Protocol):
    """What the transport needs of an emulator: its pure entry point."""

    def handle(
        self, method: str, url_path_with_query: str, headers: Mapping[str, str], body: bytes
    ) -> EmulatorResponse: ...


def make_transport(emulator: Handles, real_sleep: bool) -> httpx.MockTransport:
    import httpx

    class _Stream(httpx.SyncByteStream, httpx.AsyncByteStream):
        """A body that stops early, as when the server closes mid-transfer."""

        def __init__(self, data: bytes) -> None:
            self._data = data

        def __iter__(self) -> Iterator[bytes]:
            if self._data:
                yield self._data
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            )

        async def __aiter__(self) -> AsyncIterator[bytes]:
            if self._data:
                yield self._data
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            )

    class EmulatorTransport(httpx.MockTransport):
        """``httpx.MockTransport`` backed by an :class:`Emulator`."""

        def __init__(self, emulator: Handles, real_sleep: bool) -> None:
            super().__init__(self._unused)
            self.emulator = emulator
            self.real_sleep = real_sleep

        @staticmethod
        def _unused(request: httpx.Request) -> httpx.Response:
            raise NotImplementedError

        def _answer(self, request: httpx.Request) -> tuple[EmulatorResponse, float | None]:
            response = self.emulator.handle(
                request.method,
                request.url.raw_path.decode("ascii"),
                dict(request.headers.items()),
                request.content,
            )
            timeout = cast(dict[str, float | None], request.extensions.get("timeout", {})).get(
                "read"
            )
            return response, timeout

        @staticmethod
        def _wait(response: EmulatorResponse, timeout: float | None) -> float:
            """Seconds a real client would wait for this reply before something happens."""
            wait = response.hold if response.hold is not None else response.delay
            return min(wait, timeout) if timeout is not None else wait

        def _finish(
            self, request: httpx.Request, response: EmulatorResponse, timeout: float | None
        ) -> httpx.Response:
            if response.hold is not None:
                if timeout is not None and timeout <= response.hold:
                    raise httpx.ReadTimeout("timed out", request=request)
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                )
            if timeout is not None and response.delay >= timeout:
                raise httpx.ReadTimeout("timed out", request=request)
            if response.drop_connection:
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                )
            headers = dict(response.headers)
            if response.truncate_after is not None:
                headers.setdefault("Content-Length", str(len(response.body)))
                stream = _Stream(response.body[: response.truncate_after])
                return httpx.Response(
                    response.status, headers=headers, stream=stream, request=request
                )
            return httpx.Response(
                response.status, headers=headers, content=response.body, request=request
            )

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            request.read()
            response, timeout = self._answer(request)
            if self.real_sleep and self._wait(response, timeout) > 0:
                time.sleep(self._wait(response, timeout))
            return self._finish(request, response, timeout)

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await request.aread()
            response, timeout = self._answer(request)
            if self.real_sleep and self._wait(response, timeout) > 0:
                import anyio

                await anyio.sleep(self._wait(response, timeout))
            return self._finish(request, response, timeout)

    return EmulatorTransport(emulator, real_sleep)
