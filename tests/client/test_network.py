"""The proxies both clients use are chosen by requests' rules, written out without requests.

``network.environment_proxies`` must answer as ``requests.utils.get_environ_proxies`` does (the
hook's session used it before), for every form ``NO_PROXY`` takes: names, name endings, ports,
IPv4 addresses and networks, malformed networks, ``*``, and the lowercase variable first.
"""

from __future__ import annotations

import pytest
import requests

from airflow_provider_aidol.client.network import environment_proxies

PROXY = "http://proxy.example:3128"

CASES = [
    (None, "https://api.aidol.example"),
    ("api.aidol.example", "https://api.aidol.example"),
    ("aidol.example", "https://api.aidol.example"),
    (".aidol.example", "https://api.aidol.example/v1"),
    ("aidol.example", "https://notaidol.example"),
    ("api.aidol.example:8443", "https://api.aidol.example:8443"),
    ("api.aidol.example:8443", "https://api.aidol.example:9443"),
    ("aidol.example:8443", "https://api.aidol.example:8443"),
    (" other.example , aidol.example ", "https://api.aidol.example"),
    (",,", "https://api.aidol.example"),
    ("*", "https://api.aidol.example"),
    ("127.0.0.1", "http://127.0.0.1:8080"),
    ("127.0.0.2", "http://127.0.0.1:8080"),
    ("10.0.0.0/8", "http://10.1.2.3"),
    ("10.0.0.0/8", "http://11.1.2.3"),
    ("192.168.1.0/24", "http://192.168.1.200:80"),
    ("10.0.0.0/0", "http://10.1.2.3"),
    ("10.0.0.0/33", "http://10.1.2.3"),
    ("10.0.0.0/x", "http://10.1.2.3"),
    ("10.0.0.0/8/8", "http://10.1.2.3"),
    ("nonsense/8", "http://10.1.2.3"),
    ("127.1", "http://127.0.0.1"),
    ("localhost", "http://localhost:8080"),
    ("::1", "http://[::1]:8080"),
    (None, "http:///v1/x"),
]


@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
@pytest.mark.parametrize(("no_proxy", "url"), CASES)
def test_proxies_are_the_ones_requests_would_choose(monkeypatch, variable, no_proxy, url):
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", PROXY)
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    if no_proxy is not None:
        monkeypatch.setenv(variable, no_proxy)
    assert environment_proxies(url) == requests.utils.get_environ_proxies(url)


def test_the_lowercase_no_proxy_comes_first(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    monkeypatch.setenv("no_proxy", "other.example")
    monkeypatch.setenv("NO_PROXY", "api.aidol.example")
    url = "https://api.aidol.example"
    assert environment_proxies(url) == requests.utils.get_environ_proxies(url)
