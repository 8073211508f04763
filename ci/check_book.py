#!/usr/bin/env python3
"""Checks that the book and the code agree, before anything is built.

    python3 ci/check_book.py [--root DIR]     # DIR: a copy of the repository (default: this one)
    python3 ci/check_book.py --fix-schedule   # first redo the guide's schedules from the chapters

Includes and code
- every {{#include}} / {{#rustdoc_include}} names a committed file that exists (not one under
  target/ or book/), and its anchor exists;
- an anchored region of a .rs file that a page includes shows whole items: its brackets
  ( ) [ ] { } balance (outside comments, strings and char literals, in the lines mdBook
  shows: it leaves out every line holding an anchor comment), or it marks the cut with a
  `// --snip--` line, as The Rust Programming Language does (a first line for a region that
  starts inside an item, a last line for one that ends inside it);
- no page pastes Rust code by hand (a ```rust block of more than 8 lines with no include);
- every ```rust block is marked `ignore` or `noplayground`: this book's code needs the lab
  and a Redis server, so none of it runs in the Rust playground (and a runnable block would
  make the page call the playground over the network);
- every example program is included by some page, and every chapter includes its examples;
- every page under src/ is listed in SUMMARY.md (fragments under src/*/ are included instead);
- every test a page names as `tests/FILE.rs::name` (or `examples/...::name`) exists, and
  every `cargo run/test --example NAME` or `--test NAME` a page tells the reader to type
  names an example or test file that exists, and a `cargo test --example NAME` whose file
  has #[ignore]d tests says `-- --include-ignored` (without it, it passes testing nothing).

Lesson files and harness files (the figures are printed on every run)
- of every .rs file that a chapter includes (src/chNN-*.md, introduction.md,
  running-the-lab.md; appendices and the instructor's guide count neither way), at least
  50% of the lines are shown by chapters: the lines mdBook shows for the anchored regions
  and whole-file includes, out of the file's lines that are not anchor comments (which no
  reader ever sees). Code a chapter does not show belongs in a harness file or the lab;
- no .rs file in examples/ or lab/ is over 500 lines;
- no chapter shows more than 350 lines of code (every line of every .rs include, counted
  each time it is shown, the exercise's starter and solution too); what is cut goes to the
  appendix "Inside the lab";
- an exemption from these is listed below (EXEMPT_*) with its reason; one no longer needed
  is printed as a note, to be removed.

Workshop kit (every chapter src/chNN-*.md)
- starts with a duration line under its title: `> **Duration:** N minutes (...)`;
- has speaker notes: `<details><summary>Speaker notes</summary> ... </details>`;
- has an "Exercise" section that includes its starter examples/chNN_exercise*.rs in a code
  block, and includes the solution examples/chNN_solution*.rs only inside a
  `<details><summary>Solution...</summary>` block; links to the claims appendix, and has
  rows in src/claims/chNN.md, each naming a #[test] fn that exists;
- every <details> is closed (an open one swallows the rest of the page);
- chapters 2, 5, 6 and 8 draw their key picture as a ```mermaid diagram (the dropped read
  buffer, the backpressure chain, the reconnect gap, the consumer-group recovery).
- every examples/chNN[_topic]_exercise*.rs has `todo!()` where the learner works and a
  chNN[_topic]_solution*.rs beside it with a `#[cfg(test)]` module holding at least one test
  (ci/exercises.py makes the starter from the solution and checks that they agree).

Schedules (src/instructor-guide.md)
- every row of a schedule table that links a page gives that page's own duration, and the
  start times add up (each row starts when the one above ends; a row without minutes ends a
  day, and the next row starts a new one); `--fix-schedule` rewrites them from the
  chapters' duration lines;
- some schedule (the whole-book one) covers every chapter.

Exits 1 with the problems grouped by file, each saying what to do.
"""
import argparse
import collections
import fnmatch
import pathlib
import re
import sys

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--root", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent.parent)
parser.add_argument(
    "--fix-schedule",
    action="store_true",
    help="rewrite the instructor's guide's schedules from the chapters' duration lines, then check",
)
ARGS = parser.parse_args()
ROOT = ARGS.root.resolve()
SRC = ROOT / "src"
EXAMPLES = ROOT / "examples"

INCLUDE = re.compile(r"\{\{#(?:include|rustdoc_include)\s+([^}:\s]+)(?::([A-Za-z0-9_-]+))?[^}]*\}\}")
FENCE = re.compile(r"^(```+)([^\n`]*)\n(.*?)^\1[ \t]*$", re.S | re.M)
TEST_REF = re.compile(r"`((?:tests|examples|lab)/[\w./-]+\.rs)::(\w+)`")
CHAPTER = re.compile(r"^ch(\d\d)-")
TEST_FN = r"#\[(?:tokio::)?test\b[^\]]*\]\s*(?:#\[[^\]]*\]\s*)*(?:pub\s+)?(?:async\s+)?fn {name}\b"
DURATION = re.compile(r"^> \*\*Duration:\*\* (\d+) minutes\b")
SPEAKER_NOTES = re.compile(r"<details>\s*<summary>\s*Speaker notes\s*</summary>", re.I)
EXERCISE_HEADING = re.compile(r"^#{2,4} .*\bExercises?\b", re.M | re.I)
DETAILS = re.compile(r"<details>\s*<summary>(.*?)</summary>(.*?)</details>", re.S | re.I)
PLAYGROUND_OFF = {"ignore", "noplayground", "noplaypen"}
GUIDE = "instructor-guide.md"
# Where a picture explains better than prose, the chapter has a ```mermaid diagram of it.
DIAGRAMS = {
    "02": "the dropped read buffer",
    "05": "the backpressure chain",
    "06": "the reconnect gap",
    "08": "the consumer-group recovery",
}
# Lesson files and harness files (issue 18): limits, and the files exempt from them, each
# with its reason. A pattern is an fnmatch pattern over the path from the repository root.
MIN_SHOWN = 0.5  # of an included file's lines, shown by chapters
MAX_FILE_LINES = 500  # of a .rs file in examples/ or lab/
MAX_CHAPTER_CODE = 350  # lines of code a chapter shows
HARNESS = "an experiment's harness: the chapter shows the function that is the lesson; the rest runs the subscriber as a child process, injects faults or writes a table"
REFERENCE = "the full subscriber, the reference for what the minimal one leaves out: chapter 6 shows each job's core; trait impls and counter plumbing are read in the file (issue 18: to move into the appendix Inside the lab)"
NOT_SPLIT = "not yet split into lesson and harness files (issue 18, deliverable 1: left for after the largest files)"
SMALL = "a small example a reader takes in at one glance: a harness file beside it would add a file, not clarity"
EXERCISE = "an exercise: the learner works in the whole file in an editor, the chapter shows the part they write, and its tests run it"
NOT_SPLIT_YET = "not yet split into lesson and harness files (issue 18, deliverable 1: its next files to split)"
LAB_MODULE = "a lab module later chapters use: chapter 3 shows the detector's core (the tracker's rules, DetectGaps and its poll_next); the rest is its documented API (module docs with a doctest, Gap, GapStats, constructors), which a reader does not need shown. Its unit tests are in lab/gaps_tests.rs"
FAULTS_FILE = "split by job (issue 18); this file holds the three faults the chapter tells of, and it shows two of them whole (half-open, ACL revoked): the silent server, told in prose and in the table, leaves it at 49%"
NOT_CUT_YET = "still shows harness detail: to move to the appendix Inside the lab (issue 18, deliverable 1)"
EXEMPT_SIZE = {
}
EXEMPT_SHOWN = {
    "examples/ch*_exercise*.rs": EXERCISE,
    "examples/ch*_solution*.rs": EXERCISE,
    "examples/ch09_failover*.rs": NOT_SPLIT_YET,
    "examples/ch09_sharded.rs": NOT_SPLIT_YET,
    "examples/ch06_minimal_demo.rs": HARNESS,
    "examples/ch06_bursts.rs": HARNESS,
    "examples/ch06_production_subscriber.rs": NOT_SPLIT_YET,
    "examples/ch06_faults/*": NOT_SPLIT_YET,
    "lab/production/*": REFERENCE,
    "examples/ch06_library_tools/faults.rs": FAULTS_FILE,
    "lab/gaps.rs": LAB_MODULE,
    "lab/overflow.rs": NOT_SPLIT,
    "examples/ch01_lost_messages.rs": NOT_SPLIT,
    "examples/ch02_dropped_buffer.rs": NOT_SPLIT,
    "examples/ch02_other_losses.rs": NOT_SPLIT,
    "examples/ch03_cancellation.rs": NOT_SPLIT,
    "examples/ch08_at_most_once.rs": NOT_SPLIT,
    "examples/ch08_compare.rs": NOT_SPLIT,
    "lab/push.rs": NOT_SPLIT,
    "examples/ch03_gaps.rs": SMALL,
    "examples/ch04_confirmations.rs": SMALL,
    "examples/ch04_into_on_message.rs": SMALL,
    "examples/ch04_patterns.rs": SMALL,
    "examples/ch04_race.rs": SMALL,
    "examples/ch04_split.rs": SMALL,
    "examples/ch06_broadcast_lagged.rs": SMALL,
    "examples/ch08_trimming.rs": SMALL,
}
EXEMPT_CHAPTER_CODE = {
    "ch06-*": "the minimal subscriber (issue 18) and the full one it distils, both shown whole, and nine faults: to cut once the full one's detail moves into the appendix Inside the lab",
    "ch09-*": "Sentinel (issue 19) and Cluster in one chapter: to cut, or to split into two chapters",
    "ch03-*": "not yet cut (issue 18, deliverable 1): its stream steps and cancellation examples are not split yet",
    "ch05-*": NOT_CUT_YET,
    "ch07-*": NOT_CUT_YET,
    "ch08-*": NOT_CUT_YET,
}
CHAPTER_PAGES = {"introduction.md", "running-the-lab.md"}  # and every chNN-*.md
SCHEDULE_ROW = re.compile(r"^\|(.*)\|\s*$")
CLOCK = re.compile(r"^(\d{1,2}):(\d\d)$")

problems = collections.defaultdict(list)


def problem(where, what):
    problems[str(where)].append(what)


def line_of(text, offset):
    return text[:offset].count("\n") + 1


def includes(text):
    """(path as written, anchor, offset) of every include of a page."""
    return [(m.group(1), m.group(2), m.start()) for m in INCLUDE.finditer(text)]


def duration_of(text):
    """The N of the page's `> **Duration:** N minutes` line right under its title, or None."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) >= 2 and lines[0].startswith("# "):
        match = DURATION.match(lines[1])
        if match:
            return int(match.group(1))
    return None


# mdBook's own anchor patterns: an {{#include file:name}} shows the lines between the first
# `ANCHOR: name` and the next `ANCHOR_END: name`, leaving out every line that matches either
# pattern (so a code line that also holds an anchor comment is lost with it).
MDBOOK_ANCHOR_START = re.compile(r"ANCHOR:\s*(?P<name>[\w_-]+)")
MDBOOK_ANCHOR_END = re.compile(r"ANCHOR_END:\s*(?P<name>[\w_-]+)")
SNIP = re.compile(r"^\s*//\s*--snip--")
CHAR_LITERAL = re.compile(r"b?'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F_]+\}|.)|[^\\'\n])'")
RAW_STRING = re.compile(r'b?r(#*)"')
PAIRS = {")": "(", "]": "[", "}": "{"}


def anchored_lines(body, anchor):
    """(the (line number, text) pairs mdBook shows for {{#include FILE:anchor}}, the line of
    its ANCHOR, the line of its ANCHOR_END or the last line), or None."""
    shown, opened = [], None
    for number, line in enumerate(body.splitlines(), 1):
        if opened:
            end = MDBOOK_ANCHOR_END.search(line)
            if end and end.group("name") == anchor:
                return shown, opened, number
            if not end and not MDBOOK_ANCHOR_START.search(line):
                shown.append((number, line))
        else:
            start = MDBOOK_ANCHOR_START.search(line)
            if start and start.group("name") == anchor:
                opened = number
    return (shown, opened, len(body.splitlines())) if opened else None


def brackets(lines):
    """Rust brackets of the lines, outside comments, strings and char literals:
    (unmatched closers, unclosed openers, mismatches), each a list of (line, bracket)."""
    text = "\n".join(line for _, line in lines)
    numbers = [number for number, _ in lines]
    stack, unmatched, mismatched = [], [], []
    i, row, depth_comment = 0, 0, 0
    while i < len(text):
        c = text[i]
        if c == "\n":
            row += 1
            i += 1
        elif depth_comment:
            if text.startswith("*/", i):
                depth_comment, i = depth_comment - 1, i + 2
            elif text.startswith("/*", i):
                depth_comment, i = depth_comment + 1, i + 2
            else:
                i += 1
        elif text.startswith("//", i):
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
        elif text.startswith("/*", i):
            depth_comment, i = 1, i + 2
        elif (raw := RAW_STRING.match(text, i)) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            close = '"' + raw.group(1)
            end = text.find(close, raw.end())
            end = len(text) if end < 0 else end + len(close)
            row += text.count("\n", i, end)
            i = end
        elif c == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            row += text.count("\n", i, j)
            i = j + 1
        elif c in "'b" and (char := CHAR_LITERAL.match(text, i)) and (c == "'" or i == 0 or not text[i - 1].isalnum()):
            i = char.end()
        elif c in "([{":
            stack.append((numbers[row], c))
            i += 1
        elif c in ")]}":
            if not stack:
                unmatched.append((numbers[row], c))
            elif stack[-1][1] != PAIRS[c]:
                mismatched.append((numbers[row], c))
                stack.pop()
            else:
                stack.pop()
            i += 1
        else:
            i += 1
    return unmatched, stack, mismatched


def cut_problems(lines, end_line):
    """What is wrong with an anchored region whose brackets do not balance: a cut not marked
    by a `// --snip--` line (before the first unmatched closer, after the last unclosed
    opener). Empty when the region is whole or every cut is marked."""
    unmatched, unclosed, mismatched = brackets(lines)
    snips = [number for number, line in lines if SNIP.match(line)]
    found = []
    if unmatched and not any(snip < unmatched[0][0] for snip in snips):
        line, bracket = unmatched[0]
        found.append(f"'{bracket}' at line {line} closes what was opened before the region (it starts inside an item)")
    if unclosed and not any(snip > unclosed[-1][0] for snip in snips):
        line, bracket = unclosed[-1]
        found.append(f"'{bracket}' opened at line {line} is not closed before the region ends (line {end_line})")
    for line, bracket in mismatched:
        found.append(f"'{bracket}' at line {line} does not match the bracket it closes")
    return found


def has_test_module(code):
    return "#[cfg(test)]" in code and re.search(r"#\[(?:tokio::)?test\b", code) is not None


def is_chapter(page):
    """A page whose included code counts as shown by chapters: src/chNN-*.md, the
    introduction and Running the lab (appendices and the guide count neither way)."""
    return page.parent == SRC and (CHAPTER.match(page.name) is not None or page.name in CHAPTER_PAGES)


INCLUDE_SPEC = re.compile(r"\{\{#(?:include|rustdoc_include)\s+([^}\s]+)[^}]*\}\}")


def shown_by_include(body, spec):
    """The line numbers mdBook shows for {{#include FILE<spec>}}: spec is "" (the whole file),
    ":anchor", ":N", ":N:M", "::M" or ":N:" (lines, counted from 1). Lines that hold an anchor
    comment are never counted: mdBook leaves them out of anchored includes, and in a whole
    file they are markers, not code."""
    lines = body.splitlines()
    marker = {n for n, line in enumerate(lines, 1) if MDBOOK_ANCHOR_START.search(line) or MDBOOK_ANCHOR_END.search(line)}
    parts = spec.split(":")
    if len(parts) == 1 or (len(parts) == 2 and not parts[1]):
        return [n for n in range(1, len(lines) + 1) if n not in marker]
    if len(parts) == 2 and not parts[1].isdigit():
        found = anchored_lines(body, parts[1])
        return [n for n, _ in found[0]] if found else []
    start = int(parts[1]) if parts[1].isdigit() else 1
    end = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else (start if len(parts) == 2 else len(lines))
    return [n for n in range(start, min(end, len(lines)) + 1) if n not in marker]


def exempt(rel, table):
    """The reason rel (a path from the root) is exempt in table, or None."""
    return next((why for pattern, why in table.items() if fnmatch.fnmatchcase(rel, pattern)), None)


pages = sorted(SRC.rglob("*.md"))
texts = {page: page.read_text() for page in pages}
included_files = set()
cut_checked = set()  # (file, anchor) pairs whose brackets were checked
durations = {}  # page name -> minutes
shown_lines = collections.defaultdict(set)  # .rs file a chapter includes -> line numbers chapters show
chapter_code = collections.Counter()  # chapter page name -> lines of code it shows

# --- Includes, pasted code, playground marks, named tests: every page.
for page, text in texts.items():
    rel = page.relative_to(ROOT)
    for path, anchor, offset in includes(text):
        target = (page.parent / path).resolve()
        if any(target.is_relative_to(ROOT / generated) for generated in ("target", "book")):
            problem(rel, f"line {line_of(text, offset)}: includes {path}, a generated file that a fresh clone does not have (the book is built and read without running the tests): commit the output under src/ and include that")
            continue
        if not target.exists():
            problem(rel, f"line {line_of(text, offset)}: include target missing: {path}")
            continue
        included_files.add(target)
        if is_chapter(page) and target.suffix == ".rs":
            spec = INCLUDE_SPEC.match(text, offset).group(1)[len(path):]
            numbers = shown_by_include(target.read_text(), spec)
            shown_lines[target].update(numbers)
            chapter_code[page.name] += len(numbers)
        if anchor and not anchor.isdigit():
            body = target.read_text()
            if not re.search(rf"ANCHOR:\s*{re.escape(anchor)}\s*$", body, re.M):
                problem(rel, f"line {line_of(text, offset)}: anchor '{anchor}' not found in {path}")
            elif not re.search(rf"ANCHOR_END:\s*{re.escape(anchor)}\s*$", body, re.M):
                problem(rel, f"line {line_of(text, offset)}: anchor '{anchor}' has no ANCHOR_END in {path}")
            elif target.suffix == ".rs" and (target, anchor) not in cut_checked:
                cut_checked.add((target, anchor))
                shown, start_line, end_line = anchored_lines(body, anchor) or ([], 0, 0)
                for what in cut_problems(shown, end_line):
                    problem(
                        target.relative_to(ROOT),
                        f"anchor '{anchor}' (lines {start_line}-{end_line}, shown by {rel} line {line_of(text, offset)}) cuts an item: {what}. "
                        "Widen the anchor to the whole item, or mark the cut with a `// --snip--` line inside the region (first line for a region that starts inside an item, last line for one that ends inside it)",
                    )
    # Outputs come from runs: a RESULT line in a page is pasted (ci/outputs.py writes them).
    if page.parent.name != "generated":
        for number, line in enumerate(text.splitlines(), 1):
            if re.match(r"\s*RESULT scenario=", line):
                problem(rel, f"line {number}: a RESULT line is pasted; include the output from src/generated/ (add it to ci/outputs.py, then `python3 ci/outputs.py regen NAME`)")
    for block in FENCE.finditer(text):
        info = [word.strip() for word in re.split(r"[,\s]+", block.group(2)) if word.strip()]
        if not info or info[0] != "rust":
            continue
        body, line = block.group(3), line_of(text, block.start())
        if "{{#" not in body and body.count("\n") > 8:
            problem(rel, f"line {line}: a {body.count(chr(10))}-line rust block is pasted; include it from a compiled file by anchor")
        if not PLAYGROUND_OFF & set(info[1:]):
            problem(rel, f"line {line}: ```{block.group(2).strip()} would get a Run button, but this book's code cannot run in the Rust playground: write ```rust,ignore (or rust,noplayground)")
    # A claim is checked by a test: in the claims table a named fn must be a #[test].
    is_claims = page.parent.name == "claims" or page.name == "appendix-claims.md"
    for match in TEST_REF.finditer(text):
        path, name = match.groups()
        target = ROOT / path
        if not target.exists():
            problem(rel, f"names {path}::{name}, but {path} does not exist")
        elif not re.search(rf"\bfn {name}\b", target.read_text()):
            problem(rel, f"names {path}::{name}, but there is no fn {name} in {path}")
        elif is_claims and not re.search(TEST_FN.format(name=name), target.read_text()):
            problem(rel, f"names {path}::{name} as the check of a claim, but fn {name} is not a #[test] / #[tokio::test]")
    if page.parent.name == "claims":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip() and not (line.startswith("|") and TEST_REF.search(line)):
                problem(rel, f"line {number}: a claims row is `| claim | \`tests/FILE.rs::test_fn\` |`: this one names no test")
    # A line of text right under a table is not a paragraph: Markdown makes it one more row.
    in_fence, previous = False, ""
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and previous.startswith("|") and line.strip() and not line.lstrip().startswith(("|", "{{#")):
            problem(rel, f"line {number}: text right under a table becomes one of its rows: leave a blank line after the table")
        previous = "" if in_fence else line.lstrip()
    opened, closed = len(re.findall(r"<details\b", text)), len(re.findall(r"</details>", text))
    if opened != closed:
        problem(rel, f"{opened} <details> but {closed} </details>: they must pair up (an unclosed block hides the rest of the page)")
    if page.parent == SRC:
        minutes = duration_of(text)
        if minutes is not None:
            durations[page.name] = minutes

# --- Every example is shown somewhere.
examples = {}
for path in sorted(EXAMPLES.glob("*.rs")):
    examples[path.stem] = [path]
for main in sorted(EXAMPLES.glob("*/main.rs")):
    examples[main.parent.name] = sorted(main.parent.rglob("*.rs"))
for name, files in examples.items():
    if not any(f.resolve() in included_files for f in files):
        problem(f"examples/{name}", "no page includes it: add an {{#include}} to its chapter, or remove the example")

# --- Commands a page tells the reader to type name programs and tests that exist.
for page, text in texts.items():
    for match in re.finditer(r"cargo (?:run|test|build)\b[^`\n]*?--(example|test) ([\w-]+)", text):
        kind, name = match.groups()
        if name.isupper():
            continue  # a placeholder such as `--example NAME`
        exists = name in examples if kind == "example" else (ROOT / "tests" / f"{name}.rs").exists()
        if not exists:
            where = "examples/" if kind == "example" else "tests/"
            problem(page.relative_to(ROOT), f"line {line_of(text, match.start())}: `--{kind} {name}`, but there is no {where}{name}")
            continue
        # `cargo test --example NAME` runs no #[ignore]d test: it passes while testing nothing.
        command = text[match.start():].split("\n", 1)[0].split("`", 1)[0]
        if kind == "example" and command.startswith("cargo test") and "--include-ignored" not in command:
            ignored = [f for f in examples[name] if re.search(r"#\[ignore\b", f.read_text())]
            if ignored:
                problem(page.relative_to(ROOT), f"line {line_of(text, match.start())}: `{command.strip()}` skips the #[ignore]d tests of {ignored[0].relative_to(ROOT)}, so it passes while testing nothing: add `-- --include-ignored`")

# --- Exercises: a starter with todo!() and a tested solution beside it.
for name in sorted(examples):
    match = re.fullmatch(r"(ch\d\d\w*?)_exercise(\w*)", name)
    if not match:
        continue
    starter = EXAMPLES / f"{name}.rs"
    solution = EXAMPLES / f"{match.group(1)}_solution{match.group(2)}.rs"
    if starter.exists() and "todo!(" not in starter.read_text():
        problem(f"examples/{name}.rs", "a starter has todo!() where the learner works")
    if not solution.exists():
        problem(f"examples/{name}.rs", f"has no solution: add {solution.relative_to(ROOT)} (with a #[cfg(test)] mod tests)")
    elif not has_test_module(solution.read_text()):
        problem(solution.relative_to(ROOT), "a solution has a #[cfg(test)] module with at least one #[test] or #[tokio::test]: CI runs them")

# --- Chapters: listed, duration, speaker notes, exercise, own examples, claims link.
summary = texts[SRC / "SUMMARY.md"]
chapters = []
for page in pages:
    rel = page.relative_to(SRC).as_posix()
    if page.parent != SRC or rel == "SUMMARY.md":
        continue
    where = page.relative_to(ROOT)
    if f"]({rel})" not in summary:
        problem(where, "not listed in SUMMARY.md")
    number = CHAPTER.match(rel)
    if not number:
        continue
    chapters.append(page.name)
    nn, text = number.group(1), texts[page]
    if f"examples/ch{nn}_" not in text:
        problem(where, f"includes no examples/ch{nn}_* program")
    if page.name not in durations:
        problem(where, "no duration line: put `> **Duration:** N minutes (what the time is spent on)` right under the title")
    if not SPEAKER_NOTES.search(text):
        problem(where, "no speaker notes: add `<details><summary>Speaker notes</summary> ... </details>`")
    if nn in DIAGRAMS and not re.search(r"^```mermaid\s*$", text, re.M):
        problem(where, f"no ```mermaid diagram: this chapter shows {DIAGRAMS[nn]} as a picture")
    claims = SRC / "claims" / f"ch{nn}.md"
    if not claims.exists() or not TEST_REF.search(claims.read_text()):
        problem(where, f"no claims: add rows `| claim | \`tests/ch{nn}_topic.rs::test_fn\` |` to src/claims/ch{nn}.md")
    if "appendix-claims.md" not in text:
        problem(where, "no link to the claims appendix (appendix-claims.md)")
    heading = EXERCISE_HEADING.search(text)
    if not heading:
        problem(where, "no exercise section: add a `## Exercise` heading that includes examples/ch%s_exercise.rs by anchor" % nn)
        continue
    hidden = [(m.start(), m.end(), m.group(1)) for m in DETAILS.finditer(text)]
    starters = solutions = 0
    for path, _anchor, offset in includes(text):
        stem = pathlib.PurePosixPath(path).stem
        inside = [summary_ for start, end, summary_ in hidden if start < offset < end]
        if re.fullmatch(rf"ch{nn}(?:_\w+?)?_exercise\w*", stem):
            starters += 1
            if offset < heading.start():
                problem(where, f"line {line_of(text, offset)}: the starter {path} is included before the exercise heading")
            if inside:
                problem(where, f"line {line_of(text, offset)}: the starter {path} is hidden in a <details> block; show it")
        elif re.fullmatch(rf"ch{nn}(?:_\w+?)?_solution\w*", stem):
            solutions += 1
            if not any("solution" in s.lower() for s in inside):
                problem(where, f"line {line_of(text, offset)}: the solution {path} is shown openly; put it in <details><summary>Solution</summary> ... </details>")
    if starters == 0:
        problem(where, f"the exercise section includes no examples/ch{nn}_exercise*.rs starter")
    if solutions == 0:
        problem(where, f"the exercise section includes no examples/ch{nn}_solution*.rs (in a <details><summary>Solution</summary> block)")

# --- Schedules in the instructor's guide: durations from the chapters, clock times that add up.
guide = SRC / GUIDE


def fix_schedule(text):
    """The guide with each schedule's minutes taken from the chapters and its clock redone."""
    lines, header, clock, changed = text.split("\n"), None, None, 0
    for i, line in enumerate(lines):
        row = SCHEDULE_ROW.match(line)
        if not row:
            header = clock = None
            continue
        cells = [cell.strip() for cell in row.group(1).split("|")]
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if set("".join(cells)) <= set("-: ") or "start" not in header or "minutes" not in header:
            continue
        start_col, minutes_col = header.index("start"), header.index("minutes")
        if max(start_col, minutes_col) >= len(cells) or not CLOCK.match(cells[start_col]):
            continue
        if clock is None:
            hours, minutes = CLOCK.match(cells[start_col]).groups()
            clock = int(hours) * 60 + int(minutes)
        cells[start_col] = f"{clock // 60:02}:{clock % 60:02}"
        for linked in re.findall(r"\]\(([\w.-]+\.md)(?:#[^)]*)?\)", " ".join(cells)):
            if linked in durations and cells[minutes_col].isdigit():
                cells[minutes_col] = str(durations[linked])
        if cells[minutes_col].isdigit():
            clock += int(cells[minutes_col])
        else:
            clock = None  # an end row (no minutes): the next row, if any, starts a new day
        new = "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"
        changed += new != line
        lines[i] = new
    return "\n".join(lines), changed


if guide.exists() and ARGS.fix_schedule:
    fixed, changed = fix_schedule(texts[guide])
    guide.write_text(fixed)
    texts[guide] = fixed
    print(f"check_book: --fix-schedule rewrote {changed} row(s) of {guide.relative_to(ROOT)}")

if guide.exists():
    text = texts[guide]
    where = guide.relative_to(ROOT)
    tables, current = [], None
    for number, line in enumerate(text.splitlines(), 1):
        row = SCHEDULE_ROW.match(line)
        if not row:
            current = None
            continue
        cells = [cell.strip() for cell in row.group(1).split("|")]
        if current is None:
            current = {"header": [c.lower() for c in cells], "rows": []}
            tables.append(current)
        elif not set("".join(cells)) <= set("-: "):
            current["rows"].append((number, cells))
    schedules = [t for t in tables if "start" in t["header"] and "minutes" in t["header"]]
    if not schedules:
        problem(where, "no schedule table (columns `start`, ..., `minutes`)")
    for table in schedules:
        start_col, minutes_col = table["header"].index("start"), table["header"].index("minutes")
        previous_end = None
        covered = set()
        for number, cells in table["rows"]:
            clock = CLOCK.match(cells[start_col]) if start_col < len(cells) else None
            if not clock:
                problem(where, f"line {number}: start `{cells[start_col] if start_col < len(cells) else ''}` is not HH:MM")
                previous_end = None
                continue
            start = int(clock.group(1)) * 60 + int(clock.group(2))
            if previous_end is not None and start != previous_end:
                problem(where, f"line {number}: starts at {cells[start_col]}, but the row above ends at {previous_end // 60:02}:{previous_end % 60:02}")
            minutes_text = cells[minutes_col] if minutes_col < len(cells) else ""
            if not minutes_text.isdigit():
                previous_end = None  # the end row of a schedule has no minutes
                continue
            minutes = int(minutes_text)
            previous_end = start + minutes
            for linked in re.findall(r"\]\(([\w.-]+\.md)(?:#[^)]*)?\)", " ".join(cells)):
                covered.add(linked)
                if linked not in durations:
                    if (SRC / linked).exists():
                        problem(where, f"line {number}: links {linked}, which has no duration line yet")
                    else:
                        problem(where, f"line {number}: links {linked}, which does not exist")
                elif durations[linked] != minutes:
                    problem(where, f"line {number}: gives {linked} {minutes} minutes, but the chapter says {durations[linked]}: run python3 ci/check_book.py --fix-schedule")
        table["covered"] = covered
    full_day = [t for t in schedules if chapters and set(chapters) <= t["covered"]]
    if schedules and chapters and not full_day:
        most = max(schedules, key=lambda t: len(t["covered"] & set(chapters)))
        missing = sorted(set(chapters) - most["covered"])
        problem(where, f"no schedule covers every chapter (the fullest misses {', '.join(missing)})")

# --- Lesson files and harness files: figures, then the limits.
def code_lines(path):
    """A file's lines that are not anchor comments."""
    return [line for line in path.read_text().splitlines() if not (MDBOOK_ANCHOR_START.search(line) or MDBOOK_ANCHOR_END.search(line))]


used = set()  # exemption patterns that exempted something
print("check_book: lines of each .rs file chapters include that chapters show (goal: at least {:.0%}):".format(MIN_SHOWN))
all_shown = all_total = 0
for target in sorted(shown_lines, key=lambda t: (len(shown_lines[t]) / max(1, len(code_lines(t))), str(t))):
    rel = target.relative_to(ROOT).as_posix()
    total = len(code_lines(target))
    shown = len(shown_lines[target])
    all_shown, all_total = all_shown + shown, all_total + total
    share = shown / total if total else 1.0
    why = exempt(rel, EXEMPT_SHOWN) if share < MIN_SHOWN else None
    flag = "  (exempt: %s)" % why if why else ("  UNDER" if share < MIN_SHOWN else "")
    print(f"  {share:5.0%} {shown:5}/{total:<5} {rel}{flag}")
    if share < MIN_SHOWN:
        if why:
            used.add(("SHOWN", next(p for p in EXEMPT_SHOWN if fnmatch.fnmatchcase(rel, p))))
        else:
            problem(
                rel,
                f"chapters show {shown} of its {total} lines ({share:.0%}); at least {MIN_SHOWN:.0%}: move what they do not show "
                "(children, sampling, tables, argument parsing) into a harness file beside it or into the lab, or exempt it in "
                "EXEMPT_SHOWN in ci/check_book.py with the reason",
            )
if all_total:
    print(f"  {all_shown / all_total:5.0%} {all_shown:5}/{all_total:<5} in all, {len(shown_lines)} files")

print(f"check_book: .rs files in examples/ and lab/ over {MAX_FILE_LINES} lines:")
over = 0
for path in sorted(list(EXAMPLES.rglob("*.rs")) + list((ROOT / "lab").rglob("*.rs"))):
    rel = path.relative_to(ROOT).as_posix()
    count = len(path.read_text().splitlines())
    if count <= MAX_FILE_LINES:
        continue
    over += 1
    why = exempt(rel, EXEMPT_SIZE)
    print(f"  {count:5} {rel}" + (f"  (exempt: {why})" if why else ""))
    if why:
        used.add(("SIZE", next(p for p in EXEMPT_SIZE if fnmatch.fnmatchcase(rel, p))))
    else:
        problem(rel, f"{count} lines; at most {MAX_FILE_LINES}: split it by job (a directory example: main.rs and modules), or exempt it in EXEMPT_SIZE in ci/check_book.py with the reason")
if not over:
    print("  none")

print(f"check_book: lines of code each chapter shows (goal: at most {MAX_CHAPTER_CODE}):")
for name in sorted(chapter_code):
    count = chapter_code[name]
    why = exempt(name, EXEMPT_CHAPTER_CODE) if count > MAX_CHAPTER_CODE else None
    print(f"  {count:5} {name}" + (f"  (exempt: {why})" if why else ("  OVER" if count > MAX_CHAPTER_CODE else "")))
    if count > MAX_CHAPTER_CODE:
        if why:
            used.add(("CHAPTER_CODE", next(p for p in EXEMPT_CHAPTER_CODE if fnmatch.fnmatchcase(name, p))))
        else:
            problem(
                f"src/{name}",
                f"shows {count} lines of code; at most {MAX_CHAPTER_CODE}: move harness detail out of the anchored regions "
                "(the appendix Inside the lab may show it), or exempt the chapter in EXEMPT_CHAPTER_CODE in ci/check_book.py with the reason",
            )
unused = [
    f"EXEMPT_{kind} {pattern!r}"
    for kind, table in (("SHOWN", EXEMPT_SHOWN), ("SIZE", EXEMPT_SIZE), ("CHAPTER_CODE", EXEMPT_CHAPTER_CODE))
    for pattern in table
    if (kind, pattern) not in used
]
if unused:
    print(f"check_book: note: {len(unused)} exemption(s) exempt nothing now (remove them once their files settle): {', '.join(unused)}")

if problems:
    count = sum(len(v) for v in problems.values())
    print(f"check_book: {count} problem(s) in {len(problems)} file(s):")
    for where in sorted(problems):
        print(f"  {where}")
        # File-wide problems first, then by line.
        for what in sorted(problems[where], key=lambda w: int(m.group(1)) if (m := re.match(r"line (\d+)", w)) else 0):
            print(f"    - {what}")
    sys.exit(1)
print(
    f"check_book: {len(pages)} pages, {len(chapters)} chapters with duration, speaker notes and "
    f"exercise, {len(examples)} examples, {len(included_files)} included files: ok"
)
