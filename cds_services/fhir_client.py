"""Outbound FHIR reads for prefetch keys the EHR did not send.

One ``requests.Session`` and one thread pool per app (connection reuse, and
the missing queries run side by side so the wait is the slowest query, not
the sum). Failures become typed errors, as smart-on-fhir/client-py does, so
the caller can say exactly what went wrong. The access token is sent only to
the server it was issued for and is never logged.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions

log = logging.getLogger(__name__)


class FhirError(Exception):
    """A FHIR read failed; ``reason`` is safe to show the caller (no token, no PHI)."""

    def __init__(self, query: str, reason: str) -> None:
        super().__init__(f"{query}: {reason}")
        self.query = query
        self.reason = reason


class FhirUnauthorized(FhirError):
    """401/403: the token was refused or does not allow this read."""


class FhirNotFound(FhirError):
    """404 on a read."""


class FhirUnavailable(FhirError):
    """Connection refused, timeout, 5xx: the server could not answer."""


class FhirBadResponse(FhirError):
    """The server answered with something that is not usable FHIR JSON."""


_PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy"})


def uses_proxy(environ: Mapping[str, str]) -> bool:
    """True when the environment names an outbound proxy (any case), which requests must then honour."""
    return any(name.lower() in _PROXY_VARIABLES and value for name, value in environ.items())


class FhirDeadline(FhirUnavailable):
    """The hook call's FHIR deadline passed before this read finished."""


@dataclass(frozen=True)
class FhirClientSettings:
    connect_timeout: float
    read_timeout: float
    max_workers: int
    max_response_bytes: int
    # Hook calls of this process that may wait on FHIR servers at once; the rest do not wait
    # (their keys are reported as not read), so a slow server cannot take every thread.
    max_waiting_calls: int = 6


def remaining(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` (a time.monotonic() value), never below zero; None: no deadline."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class _Watch:
    """The connection of one FHIR read, so that the hook call's thread can cut it at the deadline.

    ``read_many`` stops waiting at the call's deadline, but the pool thread of
    an unfinished read stayed on its socket for as long as the server kept
    sending: a server that drips its headers a byte a second resets the read
    timeout with every byte and held the thread as long as it liked. Once
    every pool thread was held so, the reads of every other call, to any
    server, waited in the queue until their own deadlines. ``expire`` shuts
    the socket down, which ends the blocked read at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: urllib3.connection.HTTPConnection | None = None
        self._finished = False
        self._expired = False

    def attach(self, connection: urllib3.connection.HTTPConnection) -> None:
        with self._lock:
            if self._finished:
                return
            self._connection = connection
            if self._expired:
                _shut_down(connection)  # connected after the deadline passed

    def finish(self) -> None:
        """The read no longer waits on the server; its connection may go back to the pool (never cut)."""
        with self._lock:
            self._finished = True
            self._connection = None

    def expire(self) -> None:
        with self._lock:
            self._expired = True
            if not self._finished and self._connection is not None:
                _shut_down(self._connection)


def _shut_down(connection: urllib3.connection.HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


_current = threading.local()  # .watch: the _Watch of the read this pool thread is doing


def _attach_current(connection: urllib3.connection.HTTPConnection) -> None:
    watch: _Watch | None = getattr(_current, "watch", None)
    if watch is not None:
        watch.attach(connection)


def _finish_current() -> None:
    watch: _Watch | None = getattr(_current, "watch", None)
    if watch is not None:
        watch.finish()


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    """Tells the read being done in this thread which connection it uses (new or from the pool)."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach_current(self)
        super().request(*args, **kwargs)

    def connect(self) -> None:
        super().connect()
        _attach_current(self)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, urllib3.connection.HTTPSConnection):
    """The same for TLS: the MRO puts the watch in front of HTTPSConnection's own connect()."""


class _WatchedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter on watched connections (direct ones: through an outbound proxy, a read
    still ends at its deadline for the hook call, but its pool thread waits for the proxy)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class FhirClient:
    def __init__(self, settings: FhirClientSettings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.session = session or requests.Session()
        # One session serves every EHR user and patient: a cookie set by a FHIR server must not
        # ride along on the next call, which carries another user's token.
        self.session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        if not uses_proxy(os.environ):
            # requests re-reads proxy variables (every environment entry) and ~/.netrc on each call:
            # a third of a small query's CPU. With no proxy configured there is nothing to find, and
            # a .netrc must never add credentials to a call that carries the EHR's token anyway.
            self.session.trust_env = False
        # As many pooled connections as concurrent queries, or urllib3 drops
        # connections under load and every query pays a new TLS handshake.
        adapter = _WatchedAdapter(pool_connections=4, pool_maxsize=settings.max_workers)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._pool = ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="fhir")
        self._waiting = threading.BoundedSemaphore(settings.max_waiting_calls)

    @contextmanager
    def waiting_slot(self) -> Iterator[bool]:
        """One of the process's places for a hook call waiting on FHIR; False (at once) when all are taken.

        The bulkhead between slow FHIR servers and everything else: /healthz and
        calls with complete prefetch never need a place, so they keep their threads.
        """
        acquired = self._waiting.acquire(blocking=False)
        try:
            yield acquired
        finally:
            if acquired:
                self._waiting.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.session.close()

    def read(self, base_url: str, query: str, token: str | None, deadline: float | None = None) -> Any:
        """GET ``{base_url}/{query}`` and return the decoded JSON, within ``deadline`` (time.monotonic())."""
        left = remaining(deadline)
        if left is not None and left <= 0:
            raise FhirDeadline(query, "not read: the time for FHIR reads of this call had run out")
        connect_timeout = self.settings.connect_timeout if left is None else min(self.settings.connect_timeout, left)
        read_timeout = self.settings.read_timeout if left is None else min(self.settings.read_timeout, left)
        base = base_url.rstrip("/")
        # "?..." is a paging link on the base itself (e.g. HAPI's ?_getpages=...).
        url = f"{base}{query}" if query.startswith("?") else f"{base}/{query.lstrip('/')}"
        headers = {"Accept": "application/fhir+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            with self.session.get(
                url,
                headers=headers,
                timeout=(connect_timeout, read_timeout),
                allow_redirects=False,  # a redirect could carry the token elsewhere
                stream=True,
            ) as response:
                try:
                    status = response.status_code
                    if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
                        raise FhirUnauthorized(query, f"FHIR server refused access ({status})")
                    if status == HTTPStatus.NOT_FOUND:
                        raise FhirNotFound(query, "not found on the FHIR server (404)")
                    if HTTPStatus.MULTIPLE_CHOICES <= status < HTTPStatus.BAD_REQUEST:
                        raise FhirBadResponse(query, f"FHIR server redirected ({status}); redirects are not followed")
                    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
                        raise FhirUnavailable(query, f"FHIR server error ({status})")
                    if status != HTTPStatus.OK:
                        raise FhirBadResponse(query, f"unexpected status {status} from the FHIR server")
                    body = self._read_capped(response, query, deadline)
                finally:
                    _finish_current()  # before the connection goes back to the pool: no longer ours to cut
        except requests.Timeout:
            if deadline is not None and remaining(deadline) == 0:
                raise FhirDeadline(query, "FHIR server did not answer within the call's deadline") from None
            raise FhirUnavailable(query, "FHIR server did not answer in time") from None
        except requests.ConnectionError:
            raise FhirUnavailable(query, "could not connect to the FHIR server") from None
        except requests.RequestException as error:
            raise FhirUnavailable(query, f"request failed ({type(error).__name__})") from None
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise FhirBadResponse(query, "FHIR server answered with invalid JSON") from None

    def _read_capped(self, response: requests.Response, query: str, deadline: float | None) -> bytes:
        """The body, up to the size cap and the deadline: read as it arrives (``read1``), so a server
        that sends one byte a second is cut off at the deadline, not after a read timeout per byte."""
        limit = self.settings.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        raw = response.raw
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                raise FhirDeadline(query, "FHIR server did not send its answer within the call's deadline")
            try:
                chunk = raw.read1(65536, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError:
                # read1 is urllib3's own: requests' iter_content used to turn its errors into requests'.
                if deadline is not None and time.monotonic() >= deadline:
                    raise FhirDeadline(
                        query, "FHIR server did not send its answer within the call's deadline") from None
                raise FhirUnavailable(query, "FHIR server did not answer in time") from None
            except (urllib3.exceptions.HTTPError, OSError) as error:
                raise FhirUnavailable(query, f"the FHIR server's answer broke off ({type(error).__name__})") from None
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise FhirBadResponse(query, f"FHIR response larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def read_many(
        self, base_url: str, queries: Mapping[str, str], token: str | None, deadline: float | None = None
    ) -> dict[str, Any | FhirError]:
        """Run the queries concurrently; each key maps to its JSON or to its error.

        Returns by ``deadline`` whatever happens: a query not finished by then is
        a :class:`FhirDeadline`, and its connection is shut down so that its pool
        thread is free at once too (:class:`_Watch`).
        """
        watches = {key: _Watch() for key in queries}
        futures = {key: self._pool.submit(self._read_watched, watches[key], base_url, query, token, deadline)
                   for key, query in queries.items()}
        wait(futures.values(), timeout=remaining(deadline))
        results: dict[str, Any | FhirError] = {}
        for key, future in futures.items():
            if not future.done():
                future.cancel()
                watches[key].expire()  # its pool thread is free now, however long the server keeps sending
                error: FhirError = FhirDeadline(queries[key], "FHIR server did not answer within the call's deadline")
            else:
                try:
                    results[key] = future.result()
                    continue
                except FhirError as failure:
                    error = failure
                except Exception as failure:  # a FHIR read must never turn a hook call into a 500
                    log.exception("FHIR query for prefetch key %s failed unexpectedly", key)
                    error = FhirUnavailable(queries[key], f"the read failed ({type(failure).__name__})")
            log.warning("FHIR query for prefetch key %s failed: %s", key, error.reason)
            results[key] = error
        return results

    def _read_watched(self, watch: _Watch, base_url: str, query: str, token: str | None,
                      deadline: float | None) -> Any:
        _current.watch = watch
        try:
            return self.read(base_url, query, token, deadline)
        finally:
            watch.finish()
            _current.watch = None
