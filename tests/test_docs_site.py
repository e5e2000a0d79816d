"""The docs site: nav titles match their pages; the site checker catches what breaks from disk."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from scripts.check_site import STYLESHEET, problems
from tests.conftest import REPO

if TYPE_CHECKING:
    from pathlib import Path


class _Loader(yaml.SafeLoader):
    """Reads mkdocs.yml, ignoring its mkdocs-specific tags (``!relative``)."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
CONFIG: dict[str, Any] = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=_Loader)


def nav_entries(nav: list[Any]) -> list[tuple[str, str]]:
    entries: list[tuple[str, str]] = []
    for item in nav:
        if isinstance(item, dict):
            for title, value in item.items():
                if isinstance(value, list):
                    entries += nav_entries(value)
                else:
                    entries.append((title, value))
    return entries


@pytest.mark.parametrize(("title", "page"), [e for e in nav_entries(CONFIG["nav"]) if e[1] != "index.md"])
def test_each_nav_title_is_its_pages_title(title: str, page: str):
    text = (REPO / "docs" / page).read_text()
    if page == "changelog.md":
        text = (REPO / "CHANGELOG.md").read_text()
    heading = re.search(r"^# (.+)$", text, flags=re.MULTILINE)
    assert heading is not None
    assert heading.group(1).replace("`", "") == title


def test_links_end_in_html_so_the_site_works_from_disk():
    assert CONFIG["use_directory_urls"] is False
    assert STYLESHEET in CONFIG["extra_css"]


def write_site(site: Path, link: str) -> None:
    (site / "stylesheets").mkdir(parents=True)
    (site / STYLESHEET).write_text("")
    (site / "connection").mkdir()
    (site / "connection.html").write_text('<link href="stylesheets/extra.css">')
    (site / "reference").mkdir()
    (site / "reference" / "hook.html").write_text(
        "<link href='../stylesheets/extra.css'>aidol_conn_id: str = 'aidol_default'"
    )
    (site / "index.html").write_text(f'<link href="stylesheets/extra.css"><a href="{link}">Connection</a>')


def test_the_site_checker_accepts_links_to_files(tmp_path: Path):
    write_site(tmp_path, "connection.html#fields")
    assert problems(tmp_path) == []


def test_the_site_checker_rejects_a_link_to_a_folder(tmp_path: Path):
    write_site(tmp_path, "connection/")
    assert problems(tmp_path) == [
        "index.html: connection/ is a folder (a directory listing when opened from disk)"
    ]


def test_the_site_checker_rejects_a_page_without_the_stylesheet_and_a_default_shown_as_a_name(tmp_path: Path):
    write_site(tmp_path, "connection.html")
    (tmp_path / "reference" / "hook.html").write_text("aidol_conn_id: str = default_conn_name")
    assert problems(tmp_path) == [
        "reference/hook.html: does not load stylesheets/extra.css",
        "reference/hook.html: contains 'default_conn_name': "
        "the hook's default shown as a name, not its value",
    ]
