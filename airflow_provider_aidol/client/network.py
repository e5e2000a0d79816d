"""What both HTTP clients take from the machine: the CA bundle and the proxies; how a TLS failure reads.

Standard library only, so the triggerer's ``httpx`` client gets them without loading
``requests``. The proxy rules are ``requests``' own (``requests.utils.get_environ_proxies``),
written out here; a test holds the two to the same answers.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlparse
from urllib.request import getproxies, proxy_bypass

if TYPE_CHECKING:
    from airflow_provider_aidol.client.connection import ConnectionSettings

_IPV4_BITS = 32


def ca_bundle() -> str | None:
    """Return the CA bundle named by ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``, if any (both clients)."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


def environment_proxies(url: str) -> dict[str, str]:
    """Return the proxies the environment names for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``, …), by scheme.

    Both clients read them once, when they are built, with ``requests``' rules.
    """
    if _bypasses_proxies(url):
        return {}
    return getproxies()


def tls_failure(settings: ConnectionSettings, reason: str) -> str:
    """Return the message of a failed TLS handshake: the Base URL, and what a missing scheme means."""
    hint = (
        " (a Base URL without http:// or https:// means https; a server that speaks plain HTTP "
        "needs http:// in the Base URL)"
        if settings.base_url.startswith("https:")
        else ""
    )
    return f"TLS failed talking to {settings.base_url}{hint}: {reason}"


def _bypasses_proxies(url: str) -> bool:
    """Whether ``url`` goes direct: no host, a host ``NO_PROXY`` lists, or one the platform exempts."""
    parsed = urlparse(url)
    hostname = parsed.hostname
    if hostname is None:
        return True
    # Lowercase first, as curl, wget and requests read it.
    no_proxy = os.environ.get("no_proxy") or os.environ.get("NO_PROXY")
    if no_proxy and _listed(hostname, parsed.port, no_proxy):
        return True
    try:
        return bool(proxy_bypass(hostname))
    except (TypeError, socket.gaierror):
        return False


def _listed(hostname: str, port: int | None, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` names the host: an IPv4 address by address or network, a name by its end."""
    entries = [entry for entry in no_proxy.replace(" ", "").split(",") if entry]
    if _is_ipv4(hostname):
        return any(
            _in_network(hostname, entry) if _is_network(entry) else hostname == entry for entry in entries
        )
    with_port = f"{hostname}:{port}" if port else hostname
    for entry in entries:
        name = entry.lstrip(".")
        if name in (hostname, with_port) or hostname.endswith(f".{name}") or with_port.endswith(f".{name}"):
            return True
    return False


def _is_ipv4(text: str) -> bool:
    """Whether ``text`` is an IPv4 address in any form ``inet_aton`` takes (``127.1`` too)."""
    try:
        socket.inet_aton(text)
    except OSError:
        return False
    return True


def _is_network(entry: str) -> bool:
    """Whether ``entry`` is an IPv4 network in CIDR form, ``address/bits`` with 1 to 32 bits."""
    address, slash, bits = entry.partition("/")
    if not slash or "/" in bits:
        return False
    try:
        return 1 <= int(bits) <= _IPV4_BITS and _is_ipv4(address)
    except ValueError:
        return False


def _in_network(address: str, network: str) -> bool:
    """Whether the IPv4 ``address`` lies in ``network`` (``_is_network`` has passed)."""
    network_address, _, bits = network.partition("/")
    mask = (1 << _IPV4_BITS) - (1 << (_IPV4_BITS - int(bits)))
    return _ipv4_number(address) & mask == _ipv4_number(network_address) & mask


def _ipv4_number(address: str) -> int:
    return int.from_bytes(socket.inet_aton(address), "big")
