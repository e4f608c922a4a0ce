"""The documentation holds together: every page under docs/ is in mkdocs.yml's nav, and every
relative link in the README points at a file (the README is read on GitHub, outside the site).

`mkdocs build --strict` in .ci/run checks the links between the pages themselves.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

NAV_ENTRY = re.compile(r"^\s*-\s+(?:[^:\n]+:\s+)?(\S+\.md)\s*$")
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text.split("\nnav:\n", 1)[1]
    return [m.group(1) for line in nav.splitlines() if (m := NAV_ENTRY.match(line))]


def test_every_docs_page_is_in_the_nav_and_every_nav_page_exists():
    listed = nav_pages()
    assert "index.md" in listed and "architecture.md" in listed
    assert len(listed) == len(set(listed)), "a page is listed twice in mkdocs.yml's nav"
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(set(pages) - set(listed)) == [], "pages under docs/ missing from the nav"
    assert sorted(set(listed) - set(pages)) == [], "nav entries with no page under docs/"


def test_readme_links_point_at_files():
    links = MARKDOWN_LINK.findall((ROOT / "README.md").read_text())
    relative = [link for link in links if not re.match(r"[a-z]+:|#", link)]
    assert any(link.startswith("docs/") for link in relative)
    missing = [link for link in relative if not (ROOT / link.split("#", 1)[0]).is_file()]
    assert missing == []
