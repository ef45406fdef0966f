"""Downloads for the indexer that connect only to addresses that were checked.

Checking a URL's host (resolve, refuse private addresses) and then letting the HTTP library
resolve it again to connect leaves a window: a DNS answer that changes between the two (DNS
rebinding) reaches an internal address. Here the check happens where the connection is made:
a network backend for httpcore (the layer under httpx) resolves the host once, refuses it if
any address is not global, and connects to the addresses it checked, for the first request
and for every redirect (each redirect opens its connection through the same backend).
TLS still verifies the certificate against the URL's host name.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

from indexer.sources import UrlNotAllowed, address_allowed

# (host, port) -> addresses, as socket.getaddrinfo answers; injectable for tests.
Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]).split("%")[0] for info in infos]


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's synchronous backend, connecting only to checked addresses."""

    def __init__(
        self,
        *,
        resolver: Resolver | None = None,
        allowed: Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool] = address_allowed,
    ) -> None:
        self._resolver = resolver
        self._allowed = allowed
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        resolve = self._resolver or system_resolver
        try:
            addresses = resolve(host.strip("[]"), port)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        for text in addresses:
            address = ipaddress.ip_address(text)
            if not self._allowed(address):
                raise UrlNotAllowed(
                    f"{host} is a private, loopback or link-local address ({address}); "
                    "use --allow-private-urls for a trusted internal source"
                )
        error: Exception | None = None
        for text in addresses:  # the checked addresses, in the resolver's order
            try:
                return self._backend.connect_tcp(
                    text, port, timeout, local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise UrlNotAllowed("unix sockets are not fetched")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport on a connection pool whose connections go through GuardedBackend."""

    def __init__(self, backend: GuardedBackend) -> None:
        super().__init__()
        limits = httpx.Limits()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


def download_client(
    *,
    timeout: float,
    allow_private: bool = False,
    resolver: Resolver | None = None,
    allowed: Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool] = address_allowed,
) -> httpx.Client:
    """The indexer's client for manifest URLs: redirects followed, each request's scheme
    checked, and (unless ``allow_private``) each connection made to a checked address.
    Environment proxies are not used when guarded: the proxy would do the resolving."""

    def check_scheme(request: httpx.Request) -> None:
        if request.url.scheme not in ("http", "https") or not request.url.host:
            raise UrlNotAllowed(f"{request.url}: only http(s) URLs with a host are fetched")

    hooks = {"request": [check_scheme]}
    if allow_private:
        return httpx.Client(follow_redirects=True, timeout=timeout, event_hooks=hooks)
    transport = GuardedTransport(GuardedBackend(resolver=resolver, allowed=allowed))
    return httpx.Client(
        follow_redirects=True, timeout=timeout, event_hooks=hooks, transport=transport
    )
