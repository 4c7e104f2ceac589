"""HTTP, as the two HTTP task APIs speak it (icij-worker's service, Datashare's).

Every failure becomes an error of ml-worker's tree that says what happened and
where (``ml_worker.exceptions``): unreachable and 5xx are outages, 401/403 a
refusal, 404 an unknown task, other 4xx a refused request.
"""

from __future__ import annotations

from typing import Any

import httpx

from ml_worker.exceptions import (
    TaskServiceAuthError,
    TaskServiceError,
    TaskServiceUnavailable,
    UnknownTask,
)


class HTTPTransport:
    """An HTTP client of one task API, used as an async context manager."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        headers: dict[str, str] | None = None,
        cookies: dict[str, str] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=auth,
            headers=headers,
            cookies=cookies,
            timeout=30.0,
        )

    async def __aenter__(self) -> HTTPTransport:
        await self._http.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._http.__aexit__(*exc_info)

    async def request(
        self, method: str, path: str, *, idempotent: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """``idempotent``: the request only reads, as every GET does, so it may be
        sent again."""
        url = f"{self.base_url}{path}"
        idempotent = idempotent or method == "GET"
        try:
            res = await self._send(method, path, idempotent, **kwargs)
        except httpx.TransportError as e:
            msg = f"task service unreachable at {url}: {e.__class__.__name__} {e}"
            raise TaskServiceUnavailable(msg) from e
        status = f"{res.status_code} {res.reason_phrase}".strip()
        if res.status_code in (401, 403):
            what = (
                "rejected the credentials"
                if res.status_code == 401
                else "denied access"
            )
            msg = f"task service {what} ({status}) for {method} {url}{_body(res)}"
            raise TaskServiceAuthError(msg)
        if res.status_code == 404:
            raise UnknownTask(f"not found ({status}): {method} {url}")
        if res.status_code >= 500:
            msg = f"task service failed ({status}) on {method} {url}{_body(res)}"
            raise TaskServiceUnavailable(msg)
        if res.status_code >= 400:
            msg = f"task service refused {method} {url} ({status}){_body(res)}"
            raise TaskServiceError(msg)
        return res

    async def _send(
        self, method: str, path: str, idempotent: bool, **kwargs: Any
    ) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            if not idempotent:
                raise
            # The server dropped the connection, often a kept-alive one it had just
            # closed (icij-worker's service closes it after each 500): a read is safe
            # to send once more, on a new connection.
            return await self._http.request(method, path, **kwargs)


def _body(res: httpx.Response) -> str:
    text = res.text.strip()[:500]
    return f": {text}" if text else ""
