"""Check the built documentation site works opened from disk (``make docs`` runs this after mkdocs).

Every relative link and asset in every page must name an existing file: a link to a folder
lands on a directory listing when ``site/`` is opened without a web server. Every page must
load the project's stylesheet, and the API reference must show defaults as values.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

STYLESHEET = "stylesheets/extra.css"
#: Text that must not appear in a built page, and why.
FORBIDDEN = {
    "reference/hook.html": ("default_conn_name", "the hook's default shown as a name, not its value")
}


class _Links(HTMLParser):
    """Collects the ``href`` and ``src`` values of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value for name, value in attrs if name in {"href", "src"} and value]


def problems(site: Path) -> list[str]:
    """Return what is wrong with the site in ``site``, one line per problem."""
    found: list[str] = []
    # 404.html is only ever served by a web server, at any depth, so its links are absolute.
    pages = sorted(page for page in site.rglob("*.html") if page.name != "404.html")
    if not pages:
        return [f"{site}: no HTML pages; build the site first (make docs)"]
    for page in pages:
        name = page.relative_to(site).as_posix()
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8"))
        stylesheets = 0
        for link in parser.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or not parts.path:
                continue  # another site, mailto:, data:, or an anchor on this page
            target = (page.parent / unquote(parts.path)).resolve()
            stylesheets += target == (site / STYLESHEET).resolve()
            if target.is_dir():
                found.append(f"{name}: {link} is a folder (a directory listing when opened from disk)")
            elif not target.is_file():
                found.append(f"{name}: {link} does not exist")
        if not stylesheets:
            found.append(f"{name}: does not load {STYLESHEET}")
    for name, (text, why) in FORBIDDEN.items():
        if not (site / name).is_file():
            found.append(f"{name}: missing")
        elif text in (site / name).read_text(encoding="utf-8"):
            found.append(f"{name}: contains {text!r}: {why}")
    return found


def main() -> None:
    """Check the site folder named on the command line (default: site)."""
    site = Path(sys.argv[1] if len(sys.argv) > 1 else "site").resolve()
    found = problems(site)
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        raise SystemExit(f"{len(found)} problems in {site}")
    print(f"{site}: every link of every page names a file")


if __name__ == "__main__":
    main()
