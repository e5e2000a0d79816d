"""Redaction: no form or fragment of a credential survives into text taken from a server or connection."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import quote, quote_plus

import pytest

from airflow_provider_aidol.client.redaction import clean, quoted, redact

#: A secret with everything escaping, quoting and folding change: backslash, quotes, a double
#: space, Latin-1 letters, %, /, + and @.
SECRET = "s3\\\"cr'  e+t/%@\u00f8\u00a7\u00dc-Sec9"
KEY = "k\\e\"y'  %2F/+@\u00e9\u00a3-Key9"
SECRETS = (KEY, SECRET)


def runs_of(text: str, *credentials: str, run: int = 6) -> list[str]:
    """The runs of ``run`` characters of ``credentials`` found in ``text``."""
    return [
        credential[start : start + run]
        for credential in credentials
        for start in range(len(credential) - run + 1)
        if credential[start : start + run] in text
    ]


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        json.dumps(SECRET)[1:-1],
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
        repr(SECRET)[1:-1],
        quote(SECRET, safe=""),
        re.sub("%[0-9A-F]{2}", lambda escape: escape.group().lower(), quote(SECRET, safe="")),
        quote_plus(SECRET),
        quote(SECRET, encoding="latin-1"),
        html.escape(SECRET),
        " ".join(SECRET.split()),
    ],
    ids=[
        "raw",
        "json",
        "json-unicode",
        "repr",
        "percent",
        "percent-lower",
        "plus",
        "latin-1",
        "html",
        "folded",
    ],
)
def test_every_form_of_a_secret_is_blanked_out(form):
    text = redact(f"before {form} after", SECRETS)
    assert text == "before *** after"
    assert runs_of(text, SECRET, form) == []


def test_a_fragment_of_six_characters_is_blanked_out():
    assert redact(f"echo {SECRET[:10]}…", SECRETS) == "echo ***…"
    assert redact("short runs stay: s3\\", SECRETS) == "short runs stay: s3\\"


def test_a_secret_crossing_the_cut_is_removed_whole_before_cutting():
    text = "x" * 150 + SECRET + "y" * 100
    cut = clean(text, SECRETS, limit=160)
    assert cut == "x" * 150 + "***" + "y" * 7 + "…"
    assert runs_of(cut, SECRET) == []


def test_snippets_are_redacted_before_folding_and_quoting():
    page = f"<html>\n  <p>{SECRET}</p>\n  <p>{json.dumps(KEY)}</p>\n</html>"
    snippet = quoted(page, SECRETS, limit=160, fold=True)
    assert snippet == repr('<html> <p>***</p> <p>"***"</p> </html>')
    for form in (SECRET, KEY, repr(SECRET)[1:-1], repr(KEY)[1:-1]):
        assert runs_of(snippet, form) == []


def test_control_characters_are_escaped_so_no_log_line_can_be_forged():
    assert clean("ok\r\n2026-01-01 [error] forged", (), limit=100) == "ok\\r\\n2026-01-01 [error] forged"
    assert clean("caf\u00e9 \u4e2d", (), limit=100) == "caf\u00e9 \u4e2d"


def test_text_without_secrets_is_unchanged():
    assert redact("Agent not found", ()) == "Agent not found"
    assert redact("Agent not found", ("",)) == "Agent not found"
