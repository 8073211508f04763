#!/usr/bin/env python3
"""Checks every internal link and anchor of the built book (default: book/).

A link to another page must name a file that exists; a #fragment must be an id on the
target page. External links (http:, https:, mailto:) are not fetched: CI has no network.
"""
import html.parser
import pathlib
import sys
import urllib.parse

book = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "book").resolve()
if not (book / "index.html").exists():
    sys.exit(f"check_links: {book}/index.html not found: build the book first (mdbook build)")


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append(attrs[key])


pages = {}
for path in book.rglob("*.html"):
    parser = Page()
    parser.feed(path.read_text(errors="replace"))
    pages[path] = parser

problems = []
checked = 0
for path, page in sorted(pages.items()):
    for link in page.links:
        parts = urllib.parse.urlsplit(link)
        if parts.scheme or link.startswith("//") or link.startswith("javascript:"):
            continue
        checked += 1
        if not parts.path:
            target = path
        elif parts.path.startswith("/"):  # site-absolute (404.html): relative to the book root
            target = (book / urllib.parse.unquote(parts.path).lstrip("/")).resolve()
        else:
            target = (path.parent / urllib.parse.unquote(parts.path)).resolve()
        if target.is_dir():
            target = target / "index.html"
        where = path.relative_to(book)
        if not target.exists():
            problems.append(f"{where}: broken link {link}")
        elif parts.fragment and target.suffix == ".html":
            fragment = urllib.parse.unquote(parts.fragment)
            if fragment not in pages[target].ids:
                problems.append(f"{where}: no id '{fragment}' on {target.relative_to(book)} (link {link})")

if problems:
    print(f"check_links: {len(problems)} problem(s):")
    for problem in sorted(set(problems)):
        print("  - " + problem)
    sys.exit(1)
print(f"check_links: {checked} internal links in {len(pages)} pages: ok")
