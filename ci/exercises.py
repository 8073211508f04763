#!/usr/bin/env python3
"""Makes each exercise's starter from its solution, so that the two are one source.

    python3 ci/exercises.py generate     # rewrite every examples/*_exercise.rs from its solution
    python3 ci/exercises.py check        # CI: every committed starter is what `generate` writes
    python3 ci/exercises.py --self-test  # the generator and the check on made-up files

Pairs are found by name: examples/X_solution.rs makes examples/X_exercise.rs (ch01_solution
makes ch01_exercise; a later ch09_sentinel_solution would make ch09_sentinel_exercise). A
solution with no `// ANCHOR: todo` region is skipped with a note: its starter, if any, is
written by hand and not checked here.

What the solution marks, and what the starter gets:

    // ANCHOR: todo!("what the learner writes")    the lines up to `// ANCHOR_END: todo`
    ...                                             become `todo!("what the learner writes")`,
    // ANCHOR_END: todo                             at the marker's indentation
    // ANCHOR: todo                                 the lines up to `// ANCHOR_END: todo`
    ...                                             are left out (a struct field, a helper
    // ANCHOR_END: todo                             function the learner writes too)
    // ANCHOR: solution / ANCHOR_END: solution      the solution's own anchor: left out
                                                    (every other anchor is kept, so the
                                                    chapter includes the starter's by name)
    #[cfg(test)] mod tests { #[test] ... }          kept, each test `#[ignore]`d, with a
                                                    comment giving the command that runs them

The markers are anchor lines on purpose: mdBook leaves every line that looks like an anchor
out of an anchored include, so the solution the book shows has no trace of them. The starter
also gets `#![allow(unused)]` (a todo!() body leaves parameters and imports unused) and a
comment saying where it comes from. Everything else is copied as it is, the module doc
(`//!`) too: it describes the exercise and names both files.

Runs no cargo: `check` takes a fraction of a second. Exits 1 with what differs and the
command that fixes it.
"""
import argparse
import difflib
import pathlib
import re
import sys
import tempfile

TODO_START = re.compile(r"^(?P<indent>\s*)// ANCHOR: todo(?P<rest>.*)$")
TODO_END = re.compile(r"^\s*// ANCHOR_END: todo\s*$")
OWN_ANCHOR = re.compile(r"^\s*// ANCHOR(?:_END)?: solution\s*$")
TEST_ATTRIBUTE = re.compile(r"^(?P<indent>\s*)#\[(?:tokio::)?test\b.*\]\s*$")
TESTS_MODULE = re.compile(r"^#\[cfg\(test\)\]\s*$")


LEFT_OUT = object()  # where a region without a todo!() was, until the blank lines are tidied


class MarkerError(Exception):
    pass


def starter_name(solution):
    """examples/X_solution.rs -> examples/X_exercise.rs."""
    before, after = solution.stem.rsplit("_solution", 1)
    return solution.with_name(f"{before}_exercise{after}.rs")


def has_markers(text):
    return any(TODO_START.match(line) for line in text.splitlines())


def generate(text, solution_path, starter_path):
    """The starter made from the solution's text; MarkerError if its markers are wrong."""
    lines = text.split("\n")
    run = f"cargo test --example {starter_path.stem} -- --include-ignored"
    out = []
    region = None  # (line number, replacement) while inside a todo region
    in_tests = False
    header_done = False
    skip_blank = False
    for number, line in enumerate(lines, 1):
        if not header_done and not line.startswith("//!"):
            header_done = True
            # After the module doc: where this file comes from, and the lint the todo!()s need.
            if out and out[-1] != "":
                out.append("")
            out += [
                f"// Made from {solution_path} by `python3 ci/exercises.py generate`: book authors",
                "// edit the solution and rerun it (CI checks that the two agree). Until the todo!()s",
                "// are written, some parameters and imports are unused:",
                "#![allow(unused)]",
            ]
            # rustfmt keeps inner attributes together: no blank line before the source's own.
            following = next((later for later in lines[number - 1 :] if later.strip() and not later.lstrip().startswith("//")), "")
            if following.startswith("#!["):
                skip_blank = line == ""
            elif line != "":
                out.append("")
        if skip_blank:
            skip_blank = False
            continue
        start, end = TODO_START.match(line), TODO_END.match(line)
        if region is not None:
            if start:
                raise MarkerError(f"line {number}: `// ANCHOR: todo` inside the region opened at line {region[0]}: close that one first with `// ANCHOR_END: todo`")
            if end:
                out.append(region[1] if region[1] is not None else LEFT_OUT)
                region = None
            continue
        if end:
            raise MarkerError(f"line {number}: `// ANCHOR_END: todo` with no `// ANCHOR: todo` before it")
        if start:
            rest = start.group("rest").strip()
            if rest and not re.fullmatch(r"!\(.*\)", rest):
                raise MarkerError(f"line {number}: write `// ANCHOR: todo!(\"...\")` (the starter gets that todo!()) or `// ANCHOR: todo` alone (the starter leaves the lines out), not `// ANCHOR: todo{start.group('rest')}`")
            region = (number, start.group("indent") + "todo" + rest if rest else None)
            continue
        if OWN_ANCHOR.match(line):
            continue
        if TESTS_MODULE.match(line):
            in_tests = True
            out += [
                "// The solution's tests, each #[ignore]d until your code is written. Run them with",
                f"//     {run}",
            ]
        out.append(line)
        attribute = TEST_ATTRIBUTE.match(line) if in_tests else None
        if attribute and not (number < len(lines) and lines[number].strip().startswith("#[ignore")):
            out.append(f'{attribute.group("indent")}#[ignore = "needs your code: {run}"]')
    if region is not None:
        raise MarkerError(f"line {region[0]}: `// ANCHOR: todo` is never closed: add `// ANCHOR_END: todo`")
    # Where lines were left out, what rustfmt would do: no two blank lines in a row, and no
    # blank line right after an opening brace or before a closing one.
    for at in reversed([i for i, line in enumerate(out) if line is LEFT_OUT]):
        del out[at]
        before = out[at - 1] if at > 0 else "{"
        after = out[at] if at < len(out) else "}"
        if after.strip() == "" and (before.strip() == "" or before.rstrip().endswith("{")):
            del out[at]
        elif before.strip() == "" and after.strip().startswith("}"):
            del out[at - 1]
    return "\n".join(out)


def pairs(root):
    """(solution, starter) for every examples/*_solution.rs with markers; notes for the rest."""
    found, notes = [], []
    for solution in sorted((root / "examples").glob("*_solution.rs")):
        starter = starter_name(solution)
        if not has_markers(solution.read_text()):
            notes.append(
                f"note: {solution.relative_to(root)} has no `// ANCHOR: todo` region: "
                f"{starter.relative_to(root)} is not made from it (written by hand, not checked)"
            )
            continue
        found.append((solution, starter))
    return found, notes


def run(command, root):
    """generate or check every pair under root; returns the exit status."""
    found, notes = pairs(root)
    for note in notes:
        print(note)
    stale, errors = [], []
    for solution, starter in found:
        rel_solution, rel_starter = solution.relative_to(root), starter.relative_to(root)
        try:
            made = generate(solution.read_text(), rel_solution.as_posix(), rel_starter)
        except MarkerError as error:
            errors.append(f"{rel_solution}: {error}")
            continue
        if command == "generate":
            if not starter.exists() or starter.read_text() != made:
                starter.write_text(made)
                print(f"wrote {rel_starter} from {rel_solution}")
        elif not starter.exists():
            stale.append(f"{rel_starter} is missing (it is made from {rel_solution})")
        elif starter.read_text() != made:
            diff = difflib.unified_diff(
                starter.read_text().split("\n"), made.split("\n"),
                f"{rel_starter} (committed)", f"{rel_starter} (made from {rel_solution})", lineterm="", n=1,
            )
            shown = list(diff)
            more = f"\n    ... {len(shown) - 30} more diff lines" if len(shown) > 30 else ""
            stale.append(f"{rel_starter} differs from what {rel_solution} makes:\n    " + "\n    ".join(shown[:30]) + more)
    for error in errors:
        print(f"exercises: {error}")
    for what in stale:
        print(f"exercises: {what}")
    if stale:
        print("exercises: edit the solution, not the starter, then run `python3 ci/exercises.py generate`")
    if errors or stale:
        return 1
    verb = "made" if command == "generate" else "match their solutions"
    print(f"exercises: {len(found)} starter(s) {verb}: ok")
    return 0


SELF_TEST_SOLUTION = '''\
//! Chapter 1 exercise: add.
//!
//! cargo test --example ch01_exercise -- --include-ignored

use std::fmt;

// ANCHOR: solution
// ANCHOR: starter
pub struct Sum {
    // What does a `Sum` hold?
    // ANCHOR: todo
    total: u64,
    // ANCHOR_END: todo
}

fn add(a: u64, b: u64) -> u64 {
    // ANCHOR: todo!("add them")
    let sum = a + b;
    sum
    // ANCHOR_END: todo
}
// ANCHOR: todo

fn helper() {}
// ANCHOR_END: todo
// ANCHOR_END: starter
// ANCHOR_END: solution

fn main() {}

#[cfg(test)]
mod tests {
    #[test]
    fn adds() {
        assert_eq!(super::add(1, 2), 3);
    }

    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "already ignored"]
    async fn slow() {}
}
'''

SELF_TEST_STARTER = '''\
//! Chapter 1 exercise: add.
//!
//! cargo test --example ch01_exercise -- --include-ignored

// Made from examples/ch01_solution.rs by `python3 ci/exercises.py generate`: book authors
// edit the solution and rerun it (CI checks that the two agree). Until the todo!()s
// are written, some parameters and imports are unused:
#![allow(unused)]

use std::fmt;

// ANCHOR: starter
pub struct Sum {
    // What does a `Sum` hold?
}

fn add(a: u64, b: u64) -> u64 {
    todo!("add them")
}
// ANCHOR_END: starter

fn main() {}

// The solution's tests, each #[ignore]d until your code is written. Run them with
//     cargo test --example ch01_exercise -- --include-ignored
#[cfg(test)]
mod tests {
    #[test]
    #[ignore = "needs your code: cargo test --example ch01_exercise -- --include-ignored"]
    fn adds() {
        assert_eq!(super::add(1, 2), 3);
    }

    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "already ignored"]
    async fn slow() {}
}
'''


def self_test():
    failures = []
    made = generate(SELF_TEST_SOLUTION, "examples/ch01_solution.rs", pathlib.PurePath("examples/ch01_exercise.rs"))
    if made != SELF_TEST_STARTER:
        failures.append("the fixture's starter differs:\n" + "\n".join(difflib.unified_diff(SELF_TEST_STARTER.split("\n"), made.split("\n"), "expected", "made", lineterm="")))
    for name, broken, expected in [
        ("unclosed region", SELF_TEST_SOLUTION.replace("fn helper() {}\n// ANCHOR_END: todo\n", "fn helper() {}\n"), "is never closed"),
        ("nested region", SELF_TEST_SOLUTION.replace("    let sum", "    // ANCHOR: todo\n    let sum"), "inside the region opened"),
        ("end without start", SELF_TEST_SOLUTION.replace('    // ANCHOR: todo!("add them")\n', ""), "with no `// ANCHOR: todo` before it"),
        ("bad replacement", SELF_TEST_SOLUTION.replace('todo!("add them")', "todo add them"), "not `// ANCHOR: todo add them`"),
    ]:
        try:
            generate(broken, "examples/ch01_solution.rs", pathlib.PurePath("examples/ch01_exercise.rs"))
            failures.append(f"{name}: no error")
        except MarkerError as error:
            if expected not in str(error):
                failures.append(f"{name}: expected {expected!r} in {error}")
    # The source's own inner attribute stays next to the one the starter adds (rustfmt's way).
    attributes = generate("//! Doc.\n\n// Why.\n#![allow(deprecated)]\n\n// ANCHOR: todo!()\n// ANCHOR_END: todo\n", "s.rs", pathlib.PurePath("e.rs"))
    if "#![allow(unused)]\n// Why.\n#![allow(deprecated)]\n\ntodo!()\n" not in attributes:
        failures.append(f"a blank line between the inner attributes:\n{attributes}")
    if starter_name(pathlib.PurePath("examples/ch09_sentinel_solution.rs")) != pathlib.PurePath("examples/ch09_sentinel_exercise.rs"):
        failures.append("ch09_sentinel_solution.rs does not map to ch09_sentinel_exercise.rs")
    # The commands on a tree: generate writes, check passes, an edited starter fails, a
    # solution without markers is skipped with a note.
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        (root / "examples").mkdir()
        (root / "examples/ch01_solution.rs").write_text(SELF_TEST_SOLUTION)
        (root / "examples/ch02_solution.rs").write_text("fn main() {}\n")
        import contextlib
        import io

        def quiet(command):
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                status = run(command, root)
            return status, buffer.getvalue()

        status, out = quiet("check")
        if status != 1 or "ch01_exercise.rs is missing" not in out:
            failures.append(f"check with no starter: exit {status}:\n{out}")
        status, out = quiet("generate")
        if status != 0 or (root / "examples/ch01_exercise.rs").read_text() != SELF_TEST_STARTER:
            failures.append(f"generate: exit {status}:\n{out}")
        if "ch02_solution.rs has no `// ANCHOR: todo` region" not in out or (root / "examples/ch02_exercise.rs").exists():
            failures.append(f"a solution without markers is not skipped with a note:\n{out}")
        status, out = quiet("check")
        if status != 0:
            failures.append(f"check after generate: exit {status}:\n{out}")
        starter = root / "examples/ch01_exercise.rs"
        starter.write_text(starter.read_text().replace('todo!("add them")', "a + b"))
        status, out = quiet("check")
        if status != 1 or "differs from what examples/ch01_solution.rs makes" not in out or "+    todo!(\"add them\")" not in out:
            failures.append(f"check of an edited starter: exit {status}:\n{out}")
    if failures:
        print(f"exercises self-test: {len(failures)} failure(s):")
        for failure in failures:
            print("  - " + failure.replace("\n", "\n    "))
        return 1
    print("exercises self-test: the fixture's starter, 4 marker errors, inner attributes, generate, check and a stale starter: ok")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", choices=["generate", "check"])
    parser.add_argument("--self-test", action="store_true", help="test the generator and the check on made-up files")
    parser.add_argument("--root", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    if not args.command:
        parser.error("say generate, check or --self-test")
    return run(args.command, args.root.resolve())


if __name__ == "__main__":
    sys.exit(main())
