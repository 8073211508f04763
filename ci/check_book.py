#!/usr/bin/env python3
"""Checks that the book and the code agree, before anything is built.

- every {{#include}} / {{#rustdoc_include}} names a file that exists, and its anchor exists;
- no chapter pastes Rust code by hand (a ```rust block of more than 8 lines with no include);
- every example program is included by some chapter, and every chapter includes its examples;
- every page under src/ is listed in SUMMARY.md (fragments under src/*/ are included instead);
- every test a page names as `tests/FILE.rs::name` (or `examples/...::name`) exists.

Exits 1 with one line per problem.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
INCLUDE = re.compile(r"\{\{#(?:include|rustdoc_include)\s+([^}:\s]+)(?::([A-Za-z0-9_-]+))?[^}]*\}\}")
RUST_BLOCK = re.compile(r"```rust[^\n]*\n(.*?)```", re.S)
TEST_REF = re.compile(r"`((?:tests|examples)/[\w./-]+\.rs)::(\w+)`")
CHAPTER = re.compile(r"^ch(\d\d)-")

problems = []
included_files = set()
pages = sorted(SRC.rglob("*.md"))

for page in pages:
    rel = page.relative_to(ROOT)
    text = page.read_text()
    for match in INCLUDE.finditer(text):
        target = (page.parent / match.group(1)).resolve()
        anchor = match.group(2)
        if not target.exists():
            problems.append(f"{rel}: include target missing: {match.group(1)}")
            continue
        included_files.add(target)
        if anchor and not anchor.isdigit():
            body = target.read_text()
            if f"ANCHOR: {anchor}\n" not in body and not body.rstrip().endswith(f"ANCHOR: {anchor}"):
                problems.append(f"{rel}: anchor '{anchor}' not found in {match.group(1)}")
            elif f"ANCHOR_END: {anchor}" not in body:
                problems.append(f"{rel}: anchor '{anchor}' has no ANCHOR_END in {match.group(1)}")
    for block in RUST_BLOCK.finditer(text):
        body = block.group(1)
        if "{{#" not in body and body.count("\n") > 8:
            line = text[: block.start()].count("\n") + 1
            problems.append(f"{rel}:{line}: a {body.count(chr(10))}-line rust block is pasted; include it from a compiled file")
    for match in TEST_REF.finditer(text):
        path, name = match.groups()
        target = ROOT / path
        if not target.exists():
            problems.append(f"{rel}: names {path}::{name}, but {path} does not exist")
        elif not re.search(rf"\bfn {name}\b", target.read_text()):
            problems.append(f"{rel}: names {path}::{name}, but there is no fn {name} in {path}")

# Every example is shown somewhere; every chapter shows its own examples.
examples = {}
for path in sorted((ROOT / "examples").glob("*.rs")):
    examples[path.stem] = [path]
for main in sorted((ROOT / "examples").glob("*/main.rs")):
    examples[main.parent.name] = sorted(main.parent.rglob("*.rs"))
for name, files in examples.items():
    if not any(f.resolve() in included_files for f in files):
        problems.append(f"examples/{name}: no chapter includes it (add an {{{{#include}}}} or remove the example)")

summary = (SRC / "SUMMARY.md").read_text()
for page in pages:
    rel = page.relative_to(SRC).as_posix()
    if page.parent != SRC or rel == "SUMMARY.md":
        continue
    if f"]({rel})" not in summary:
        problems.append(f"src/{rel}: not listed in SUMMARY.md")
    number = CHAPTER.match(rel)
    if number:
        prefix = f"ch{number.group(1)}_"
        text = page.read_text()
        if f"examples/{prefix}" not in text:
            problems.append(f"src/{rel}: includes no examples/{prefix}* program")

if problems:
    print("check_book: %d problem(s):" % len(problems))
    for problem in problems:
        print("  - " + problem)
    sys.exit(1)
print(f"check_book: {len(pages)} pages, {len(examples)} examples, {len(included_files)} included files: ok")
