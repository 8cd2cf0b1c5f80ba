"""The README's settings reference is the code's: a setting added without documenting it fails here."""

from __future__ import annotations

import re

from core.settings import reference
from insane.devkit import ROOT


def test_settings_table_matches_the_code() -> None:
    text = (ROOT / "README.md").read_text()
    table = text.split("<!-- settings-table -->")[1].split("<!-- /settings-table -->")[0]
    rows = [
        tuple(cell.strip().strip("`") for cell in line.strip().strip("|").split("|"))
        for line in table.strip().splitlines()[2:]
    ]
    assert rows == [(name, default, expected.replace("|", "\\|")) for name, default, expected in reference()]


def test_readme_names_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert re.search(r"^\./dev\.sh demo", text, re.M) and re.search(r"^\./dev\.sh test", text, re.M)


def _slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_into_the_architecture_page_name_sections_it_has() -> None:
    readme = (ROOT / "README.md").read_text()
    page = (ROOT / "docs" / "architecture.md").read_text()
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", page, re.M)}
    linked = re.findall(r"\(docs/architecture\.md#([\w-]+)\)", readme) + re.findall(r"\]\(#([\w-]+)\)", page)
    assert {"the-worker-engine-coreworker", "the-desktop-app-desktop", "glossary"} <= set(linked)
    assert set(linked) <= anchors
