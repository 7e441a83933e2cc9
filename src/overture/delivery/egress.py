"""The egress guard: every outbound connection Overture makes (HTTP, SMTP, S3 endpoints) passes here.

A destination's target is user input, so a naive sender is an SSRF primitive: it would let any key
holder reach the cloud metadata service (169.254.169.254), the database on localhost, or the private
network. The guard refuses every address that is not global unicast unless the operator allowlists it
(`OVERTURE_EGRESS_ALLOW`, CIDRs).

Three properties matter:

* **Resolved, not textual.** A host is judged by the addresses it resolves to (`getaddrinfo`), so
  `127.1`, `0x7f000001`, `2130706433`, `[::ffff:169.254.169.254]` and a name pointing at 127.0.0.1
  are all seen as what they are. If ANY address of a name is refused, the name is refused (a
  round-robin record cannot smuggle one private address in).
* **Pinned.** The check and the connection use the same resolution: the HTTP client's network
  backend resolves, checks, then connects to the checked IP itself (TLS still verifies and sends SNI
  for the host name), and SMTP does the same through `connect_tcp`. A DNS answer that changes between
  check and connect (DNS rebinding) therefore cannot redirect the socket.
* **Every hop.** Redirects are followed by hand, at most `MAX_REDIRECTS`, each new origin checked
  before it is contacted; proxies from the environment are ignored (`trust_env=False`) since a proxy
  would make the connection on our behalf, unchecked.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from overture.errors import Invalid

if TYPE_CHECKING:
    from overture.db.context import AppContext

__all__ = [
    "MAX_REDIRECTS",
    "EgressError",
    "EgressGuard",
    "EgressRefused",
    "HostUnresolved",
    "TooManyRedirects",
    "address_refusal",
    "guard_for",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_REDIRECTS = 5
DNS_TTL_SECONDS = 30.0
MAX_CACHED_NAMES = 10_000
MAX_RESPONSE_BYTES = 64 * 1024
REDACTED_ON_CROSS_ORIGIN = ("authorization", "proxy-authorization", "cookie")

# Special-purpose blocks (IANA registries), listed explicitly so the verdict does not depend on the
# Python version's idea of `is_global`. Each with the reason shown to the user.
_SPECIAL: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), why)
    for net, why in (
        ("0.0.0.0/8", "a 'this network' address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a carrier-grade NAT (100.64.0.0/10) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address (this includes cloud metadata services)"),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "an IETF protocol assignment address"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a 6to4 relay address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("::/128", "the unspecified address"),
        ("::1/128", "a loopback address"),
        ("::ffff:0:0/96", "an IPv4-mapped IPv6 address"),
        ("::/96", "an IPv4-compatible IPv6 address"),
        ("64:ff9b::/96", "a NAT64 address"),
        ("64:ff9b:1::/48", "a NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("2001::/23", "an IETF protocol assignment (e.g. Teredo) address"),
        ("2001:db8::/32", "a documentation address"),
        ("fc00::/7", "a unique local (ULA) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)
_6TO4 = ipaddress.ip_network("2002::/16")


class EgressError(Invalid):
    """An outbound target Overture will not (or cannot) reach. 422 when raised at save."""

    code = "egress_refused"


class EgressRefused(EgressError):
    """The target resolves to an address the guard forbids (permanent for a message)."""


class HostUnresolved(EgressError):
    """The name does not resolve right now (may be transient for a message)."""

    code = "egress_unresolved"


class TooManyRedirects(EgressError):
    code = "egress_too_many_redirects"


def address_refusal(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address, or None if it is one."""
    for net, why in _SPECIAL:
        if ip.version == net.version and ip in net:
            return why
    if isinstance(ip, ipaddress.IPv6Address) and ip in _6TO4:
        embedded = ip.sixtofour
        if embedded is not None and address_refusal(embedded) is not None:
            return "a 6to4 address embedding a non-public IPv4 address"
        return None
    if ip.is_unspecified or ip.is_loopback or ip.is_link_local or ip.is_multicast:
        return "a non-unicast or local address"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return "not a globally routable address"
    return None


@dataclass(frozen=True)
class Target:
    """A checked origin: the name as written, its port, and the addresses we may connect to."""

    host: str
    port: int
    addresses: tuple[IPAddress, ...]


class EgressGuard:
    """Resolves, judges and connects. One per process (see `guard_for`); thread-safe."""

    def __init__(
        self,
        allow: Iterable[str] = (),
        *,
        dns_ttl: float = DNS_TTL_SECONDS,
        resolver: Any = None,
    ) -> None:
        self.allow: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(c, strict=False) for c in allow)
        self._ttl = dns_ttl
        self._resolve_fn = resolver or _getaddrinfo
        self._cache: dict[tuple[str, int], tuple[float, tuple[IPAddress, ...]]] = {}
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None

    # -- judging -----------------------------------------------------------------------------

    def allowed(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        if any(c in net for c in candidates for net in self.allow if c.version == net.version):
            return True
        return address_refusal(ip) is None

    def resolve(self, host: str, port: int) -> tuple[IPAddress, ...]:
        """All addresses of `host` (cached for a few seconds: the send path resolves per connection)."""
        key = (host.lower().rstrip("."), port)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            addresses = self._resolve_fn(key[0], port)
        except (OSError, UnicodeError) as exc:
            raise HostUnresolved(f"host '{host}' does not resolve ({exc})") from None
        if not addresses:
            raise HostUnresolved(f"host '{host}' does not resolve")
        with self._lock:
            if len(self._cache) >= MAX_CACHED_NAMES:
                self._cache.clear()
            self._cache[key] = (now + self._ttl, addresses)
        return addresses

    def check_host(self, host: str, port: int) -> Target:
        """Resolve `host` and refuse it if any of its addresses is forbidden."""
        if not host:
            raise EgressRefused("no host given")
        addresses = self.resolve(host, port)
        for ip in addresses:
            if not self.allowed(ip):
                shown = host if host == str(ip) else f"{host} ({ip})"
                raise EgressRefused(
                    f"refusing to connect to {shown}: {address_refusal(ip)}; an operator may allow it "
                    "with OVERTURE_EGRESS_ALLOW"
                )
        return Target(host, port, addresses)

    def check_url(self, url: str | httpx.URL) -> Target:
        """An http(s) URL whose host passes `check_host`."""
        try:
            parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        except (httpx.InvalidURL, ValueError) as exc:
            raise EgressRefused(f"not a valid URL: {exc}") from None
        if parsed.scheme not in ("http", "https"):
            raise EgressRefused("only http:// and https:// URLs are allowed")
        host = parsed.raw_host.decode("ascii", "replace")  # IDNA already applied: what we connect to
        if not host:
            raise EgressRefused("the URL has no host")
        if not _HOSTNAME.match(host) and not _is_ip(host):
            raise EgressRefused(f"'{host}' is not a valid host name")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        return self.check_host(host, port)

    # -- connecting ----------------------------------------------------------------------------

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, source_address: Any = None
    ) -> socket.socket:
        """A TCP socket to a checked address of `host` (tried in order, like create_connection)."""
        target = self.check_host(host, port)
        last: OSError | None = None
        for ip in target.addresses:
            try:
                return socket.create_connection((str(ip), port), timeout, source_address=source_address)
            except OSError as exc:
                last = exc
        assert last is not None
        raise last

    def client(self) -> httpx.Client:
        """The process-wide HTTP client: keep-alive pool, every new connection checked and pinned."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(
                        transport=_GuardedTransport(self),
                        trust_env=False,
                        follow_redirects=False,
                        timeout=httpx.Timeout(10.0),
                    )
        return self._client

    def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        max_redirects: int = MAX_REDIRECTS,
    ) -> httpx.Response:
        """Send one request and follow redirects by hand, checking every hop's host first.

        A body is only re-sent on 307/308 (which promise the same method); a POST answered with
        301/302/303 returns that response instead of silently becoming a GET without its payload.
        The response body is read up to MAX_RESPONSE_BYTES (enough for an error message), so a
        hostile receiver cannot make us buffer gigabytes."""
        client = self.client()
        current = httpx.URL(url)
        hdrs = httpx.Headers(headers or {})
        for _hop in range(max_redirects + 1):
            self.check_url(current)
            request = client.build_request(method, current, content=content, headers=hdrs, timeout=timeout)
            streamed = client.send(request, stream=True)
            try:
                response = _read_bounded(streamed)
            finally:
                streamed.close()
            location = response.headers.get("location")
            if not response.is_redirect or location is None:
                return response
            keeps_method = response.status_code in (307, 308)
            if not keeps_method and method.upper() not in ("GET", "HEAD"):
                return response
            try:
                nxt = current.join(location)
            except (httpx.InvalidURL, ValueError) as exc:
                raise EgressRefused(f"invalid redirect location: {exc}") from None
            if (nxt.scheme, nxt.host, nxt.port) != (current.scheme, current.host, current.port):
                for name in REDACTED_ON_CROSS_ORIGIN:
                    hdrs.pop(name, None)
            current = nxt
        raise TooManyRedirects(f"more than {max_redirects} redirects")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?$")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


#: Headers that describe the body as sent, not the decoded body a bounded response holds.
_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _read_bounded(response: httpx.Response) -> httpx.Response:
    """The response with at most MAX_RESPONSE_BYTES of its decoded body read; a longer body is cut
    (the connection is then dropped rather than drained). Built with httpx's public constructor."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():  # decoded, still incremental: a zip bomb stops at the cap
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_RESPONSE_BYTES:
            break
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_HEADERS]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=b"".join(chunks)[:MAX_RESPONSE_BYTES],
        request=response.request,
        extensions=response.extensions,
    )


def _getaddrinfo(host: str, port: int) -> tuple[IPAddress, ...]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[IPAddress, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        # Strip an IPv6 zone id ("fe80::1%eth0"): the address itself decides.
        seen[ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
    return tuple(seen)


class _GuardedBackend(httpcore.SyncBackend):
    """httpcore network backend that connects only to addresses the guard approved."""

    def __init__(self, guard: EgressGuard) -> None:
        self._guard = guard

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        target = self._guard.check_host(host, port)
        last: Exception | None = None
        for ip in target.addresses:
            try:
                # httpcore keeps the origin's host name for SNI and certificate checks.
                return super().connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """httpcore's transport errors raised as the httpx ones of the same name (what callers catch)."""
    try:
        yield
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as exc:
        for cls in type(exc).__mro__:
            mapped = getattr(httpx, cls.__name__, None)
            if isinstance(mapped, type) and issubclass(mapped, httpx.TransportError):
                raise mapped(str(exc)) from exc
        raise


class _Body(httpx.SyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._response.iter_stream()

    def close(self) -> None:
        self._response.close()


class _GuardedTransport(httpx.BaseTransport):
    """An httpx transport (the documented custom-transport interface) over an httpcore connection
    pool whose network backend connects only to addresses the guard approved: public interfaces of
    both libraries, since httpx 0.28 takes no network backend of its own."""

    def __init__(self, guard: EgressGuard) -> None:
        self._core = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=50,
            keepalive_expiry=30.0,
            network_backend=_GuardedBackend(guard),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = self._core.handle_request(core_request)
        return httpx.Response(
            response.status, headers=response.headers, stream=_Body(response), extensions=response.extensions
        )

    def close(self) -> None:
        self._core.close()


def guard_for(ctx: AppContext) -> EgressGuard:
    """The process-wide guard built from `ctx.settings.egress_allow`."""

    def build(c: AppContext) -> EgressGuard:
        g = EgressGuard(c.settings.egress_allow)
        c.closers.append(g.close)
        return g

    guard: EgressGuard = ctx.service("delivery.egress", build)
    return guard
