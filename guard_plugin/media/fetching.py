"""Remote content fetched for a check, where the policy allows it (``media.allow_url_fetch``).

A URL in a message is untrusted input. Fetched as it stands, it makes the guard's host request
whatever the URL names: a cloud metadata endpoint, an admin port on localhost, a service inside
the private network, directly or through a redirect (server-side request forgery). So each hop
is checked before it is requested: only ``http`` and ``https``, the host resolved, and every
address it resolves to a public one (unless the policy's ``media.fetch_private_networks``
allows private networks). The request then goes to the address that was checked, with the
URL's host as the ``Host`` header and TLS server name (the certificate is verified for that
host), so a DNS answer that changes between the check and the connection (rebinding) cannot
move it. Redirects are followed one hop at a time, each checked, at most ``MAX_REDIRECTS``.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from guard_plugin.errors import MediaError, UnverifiableMedia
from guard_plugin.policy import MediaLimits

__all__ = ["MAX_REDIRECTS", "fetch"]

MAX_REDIRECTS = 5


def _addresses(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order."""
    found: list[str] = []
    for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        addr = str(info[4][0])
        if addr not in found:
            found.append(addr)
    return found


def _public(addr: str) -> bool:
    """Whether ``addr`` is a public unicast address (an IPv4-mapped IPv6 address is judged as
    the IPv4 address it carries)."""
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _pinned(url: str, limits: MediaLimits) -> tuple[str, dict[str, str], dict[str, str]]:
    """The request for one hop: the URL with the checked address in the host's place, the
    ``Host`` header, and the TLS server name."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnverifiableMedia(f"remote content not fetched ({url[:80]}): only http(s) URLs are")
    host = parts.hostname
    if not host:
        raise UnverifiableMedia(f"remote content not fetched ({url[:80]}): the URL names no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addrs = _addresses(host, port)
    except (OSError, ValueError, UnicodeError):
        raise UnverifiableMedia(f"cannot fetch {url[:80]}: {host[:60]} does not resolve") from None
    private = [a for a in addrs if not _public(a)]
    if private and not limits.fetch_private_networks:
        raise UnverifiableMedia(
            f"remote content not fetched ({url[:80]}): {host[:60]} resolves to a non-public "
            f"address ({private[0]}); the policy's media.fetch_private_networks is off"
        )
    addr = addrs[0]
    netloc = f"[{addr}]" if ":" in addr else addr
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = host if not parts.port else f"{host}:{parts.port}"
    if ":" in host:  # an IPv6 literal keeps its brackets in the Host header
        host_header = f"[{host}]" if not parts.port else f"[{host}]:{parts.port}"
    tls = {"sni_hostname": host} if parts.scheme == "https" else {}
    return target, {"Host": host_header}, tls


def fetch(url: str, limits: MediaLimits, cap: int) -> bytes:
    """The bytes at ``url``, at most ``cap`` of them, each hop checked (module docstring)."""
    if not limits.allow_url_fetch:
        raise UnverifiableMedia(
            f"remote content not fetched ({url[:80]}); the policy's media.allow_url_fetch is off"
        )
    import httpx

    with httpx.Client(timeout=limits.fetch_timeout_s, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            target, headers, tls = _pinned(url, limits)
            request = client.build_request("GET", target, headers=headers, extensions=tls)
            try:
                resp = client.send(request, stream=True)
                try:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise UnverifiableMedia(f"cannot fetch {url[:80]}: an empty redirect")
                        url = urljoin(url, location)
                        continue
                    resp.raise_for_status()
                    return _read(resp, url, cap)
                finally:
                    resp.close()
            except httpx.HTTPError as err:
                raise UnverifiableMedia(f"cannot fetch {url[:80]}: {type(err).__name__}") from None
    raise UnverifiableMedia(f"cannot fetch {url[:80]}: more than {MAX_REDIRECTS} redirects")


def _read(resp: Any, url: str, cap: int) -> bytes:
    chunks, size = [], 0
    for chunk in resp.iter_bytes():
        size += len(chunk)
        if size > cap:
            raise MediaError(f"{url[:80]} is over the policy's limit of {cap:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
