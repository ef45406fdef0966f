"""The indexer fetches what a manifest names: it must not become a way into the network it
runs in (SSRF) nor read files outside the manifest's folder (path traversal)."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.client import APIClient
from indexer.ingest import IngestJob, IngestOptions, SourceProblem
from indexer.sources import UrlNotAllowed, check_url, open_source
from indexer.state import JobState


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.jpg",
        "http://localhost:8000/a.jpg",
        "http://[::1]/a.jpg",
        "http://0.0.0.0/a.jpg",
        "http://10.1.2.3/a.jpg",
        "http://172.16.0.9/a.jpg",
        "http://192.168.1.1/a.jpg",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[fd00::1]/a.jpg",
        "http://[::ffff:127.0.0.1]/a.jpg",
        "http://2130706433/a.jpg",  # 127.0.0.1 as a decimal number
        "http://224.0.0.1/a.jpg",
        "file:///etc/passwd",
        "ftp://example.com/a.jpg",
        "http:///a.jpg",
    ],
)
def test_private_loopback_and_odd_urls_are_refused(url: str) -> None:
    with pytest.raises(UrlNotAllowed):
        check_url(url)


def test_public_addresses_pass_and_the_opt_in_lets_private_ones_through() -> None:
    check_url("http://8.8.8.8/a.jpg")  # a literal: resolved without a network
    check_url("https://[2606:4700:4700::1111]/a.jpg")
    check_url("http://127.0.0.1:9/a.jpg", allow_private=True)
    with pytest.raises(UrlNotAllowed):
        check_url("file:///etc/passwd", allow_private=True)


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[str]:
    """A server on loopback with one image and a redirect to it (as an attacker's public
    host would redirect to an internal one)."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "a.png").write_bytes(b"\x89PNG fake")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/hop":
                self.send_response(302)
                self.send_header("Location", "/a.png")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path / "www"))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _job(tmp_path: Path, allow_private: bool) -> IngestJob:
    # The API is never contacted by a download; the client only has to exist.
    client = APIClient("http://127.0.0.1:9")
    state = JobState(tmp_path / f"state-{allow_private}.sqlite")
    return IngestJob(client, state, IngestOptions(allow_private_urls=allow_private))


def test_the_indexer_refuses_to_download_from_loopback_unless_allowed(
    tmp_path: Path, local_server: str
) -> None:
    refused = _job(tmp_path, allow_private=False)
    for path in ("/a.png", "/hop"):
        with pytest.raises(SourceProblem) as info:
            refused._download(local_server + path, {})
        assert info.value.code == "url_not_allowed"
        assert "allow-private-urls" in info.value.message

    allowed = _job(tmp_path, allow_private=True)
    data, response = allowed._download(local_server + "/hop", {})
    assert response.status_code == 200 and data == b"\x89PNG fake"


def test_manifest_paths_may_not_escape_the_manifest_folder(tmp_path: Path) -> None:
    catalog = tmp_path / "shop" / "catalog"
    (catalog / "img").mkdir(parents=True)
    (catalog / "img" / "a.png").write_bytes(b"x")
    secret = tmp_path / "shop" / "secret.png"
    secret.write_bytes(b"x")
    (catalog / "img" / "link.png").symlink_to(secret)
    manifest = catalog / "items.jsonl"
    rows = [
        {"id": "ok", "path": "img/a.png"},
        {"id": "dots", "path": "../secret.png"},
        {"id": "deep", "path": "img/../../../../../../etc/passwd"},
        {"id": "absolute", "path": str(secret)},
        {"id": "symlink", "path": "img/link.png"},
        {"id": "scheme", "path": "file:///etc/passwd"},
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    items = {i.id: i for i in open_source(manifest)}
    assert items["ok"].problem is None and items["ok"].path == catalog / "img" / "a.png"
    for refused in ("dots", "deep", "absolute", "symlink"):
        problem = items[refused].problem
        assert problem is not None and problem[0] == "path_not_allowed", refused
        assert items[refused].path is None
    assert items["scheme"].problem is not None
    assert items["scheme"].problem[0] == "url_not_allowed"

    # An explicit base folder widens the jail; --allow-any-path lifts it.
    wider = {i.id: i for i in open_source(manifest, base=tmp_path / "shop")}
    assert wider["dots"].problem is None and wider["symlink"].problem is None
    assert wider["deep"].problem is not None
    anywhere = {i.id: i for i in open_source(manifest, allow_outside=True)}
    assert anywhere["deep"].problem is None


class Rebinding:
    """A resolver whose answer for a host changes: the first answer, then the second for
    every later question (a DNS-rebinding attacker's name server with a TTL of 0)."""

    def __init__(self, first: str, then: str) -> None:
        self.answers = [first, then]
        self.asked = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked += 1
        return [self.answers[min(self.asked - 1, 1)]]


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[int, list[str]]]:
    """The same port on 127.0.0.1 (standing in for a public host) and on 127.0.0.2 (an
    internal one); each answers with its own name and records what it was asked."""
    seen: list[str] = []

    def handler(name: str) -> type[http.server.BaseHTTPRequestHandler]:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(f"{name}{self.path}")
                if self.path == "/hop":
                    self.send_response(302)
                    self.send_header("Location", "/a.png")
                    self.end_headers()
                    return
                body = name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    public = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler("public"))
    port = public.server_address[1]
    internal = http.server.ThreadingHTTPServer(("127.0.0.2", port), handler("internal"))
    for server in (public, internal):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield port, seen
    for server in (public, internal):
        server.shutdown()
        server.server_close()


def _only_public(address) -> bool:  # type: ignore[no-untyped-def]
    return str(address) == "127.0.0.1"


def test_a_dns_answer_that_changes_after_the_check_never_reaches_the_internal_host(
    two_servers: tuple[int, list[str]],
) -> None:
    from indexer.fetch import download_client

    port, seen = two_servers
    url = f"http://rebind.test:{port}"
    # First request: the answer checked is the one connected to.
    resolver = Rebinding("127.0.0.1", then="127.0.0.2")
    with download_client(timeout=5, resolver=resolver, allowed=_only_public) as client:
        assert client.get(f"{url}/a.png").text == "public"
    # A new connection asks again; the internal answer is checked and refused.
    with (
        download_client(timeout=5, resolver=resolver, allowed=_only_public) as client,
        pytest.raises(UrlNotAllowed, match=r"127\.0\.0\.2"),
    ):
        client.get(f"{url}/a.png")
    # A redirect: checked when its connection is made, with the answer it connects to.
    resolver = Rebinding("127.0.0.1", then="127.0.0.2")
    with (
        download_client(timeout=5, resolver=resolver, allowed=_only_public) as client,
        pytest.raises(UrlNotAllowed),
    ):
        client.get(f"{url}/hop", headers={"Connection": "close"})
    assert resolver.asked == 2
    assert seen == ["public/a.png", "public/hop"]  # the internal host was never asked


def test_the_indexer_connects_to_the_address_it_checked(
    tmp_path: Path, two_servers: tuple[int, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same through the indexer's own download path and the system resolver: a name
    that resolves to a public address when checked and to loopback when connected to."""
    import socket

    port, seen = two_servers
    answers = iter(["93.184.216.34"] + ["127.0.0.1"] * 10)
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host != "rebind.test":
            return real(host, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    state = JobState(tmp_path / "state.sqlite")
    job = IngestJob(APIClient("http://127.0.0.1:9"), state, IngestOptions(download_timeout=1))
    for path in ("/a.png", "/hop"):
        with pytest.raises(SourceProblem) as info:
            job._download(f"http://rebind.test:{port}{path}", {})
        # Connected to the checked public address (unreachable here), or refused loopback.
        assert info.value.code in ("download_failed", "url_not_allowed"), info.value
    assert seen == []
