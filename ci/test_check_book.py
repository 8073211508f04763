#!/usr/bin/env python3
"""Tests ci/check_book.py on a small made-up book: a correct one passes, and each way of
breaking it is reported with a message that says what is wrong.

    python3 ci/test_check_book.py        # run by ci/test.sh before check_book.py itself
"""
import pathlib
import subprocess
import sys
import tempfile
import textwrap

CHECKER = pathlib.Path(__file__).resolve().parent / "check_book.py"

GOOD = {
    "src/SUMMARY.md": """\
        # Summary

        [Running the lab](running-the-lab.md)

        - [A chapter](ch01-topic.md)
        - [Claims](appendix-claims.md)
        - [Instructor's guide](instructor-guide.md)
        """,
    "src/running-the-lab.md": """\
        # Running the lab

        > **Duration:** 15 minutes, including the install.

        Text. Then `cargo run --example ch01_topic` and `cargo test --test ch01_topic`.
        The exercise's tests: `cargo test --example ch01_solution`.
        """,
    "src/ch01-topic.md": """\
        # A chapter

        > **Duration:** 40 minutes (20 talk, 20 exercise)

        ```rust,ignore
        {{#include ../examples/ch01_topic.rs:main}}
        ```

        ```mermaid
        flowchart LR
          a --> b
        ```

        <details><summary>Speaker notes</summary>

        Say this.

        </details>

        ## Exercise

        ```rust,ignore
        {{#include ../examples/ch01_exercise.rs:task}}
        ```

        <details>
        <summary>Solution</summary>

        ```rust,ignore
        {{#include ../examples/ch01_solution.rs:task}}
        ```

        </details>

        Claims: [appendix](appendix-claims.md).
        """,
    "src/appendix-claims.md": """\
        # Claims

        | claim | test |
        |---|---|
        {{#include claims/ch01.md}}
        """,
    "src/claims/ch01.md": """\
        | it works | `tests/ch01_topic.rs::it_works` |
        """,
    "src/instructor-guide.md": """\
        # Instructor's guide

        | start | segment | minutes |
        |---|---|---|
        | 09:00 | [Running the lab](running-the-lab.md) | 15 |
        | 09:15 | [A chapter](ch01-topic.md) | 40 |
        | 09:55 | Break | 5 |
        | 10:00 | end | |
        """,
    "examples/ch01_topic.rs": """\
        fn main() {
            // ANCHOR: main
            println!("hi");
            println!("there");
            // ANCHOR_END: main
        }
        """,
    "examples/ch01_exercise.rs": """\
        // ANCHOR: task
        fn task() -> u32 {
            todo!("your code")
        }
        // ANCHOR_END: task
        fn main() {}
        """,
    "examples/ch01_solution.rs": """\
        // ANCHOR: task
        fn task() -> u32 {
            1
        }
        // ANCHOR_END: task
        fn main() {}
        #[cfg(test)]
        mod tests {
            #[test]
            fn task_is_one() {
                assert_eq!(super::task(), 1);
            }
        }
        """,
    "tests/ch01_topic.rs": """\
        #[test]
        fn it_works() {
            helper();
        }

        fn helper() {}
        """,
}

CH = "src/ch01-topic.md"
GUIDE = "src/instructor-guide.md"

# (what is broken, file, old text, new text, a piece of the message expected)
BROKEN = [
    ("no duration", CH, "> **Duration:** 40 minutes (20 talk, 20 exercise)", "", "no duration line"),
    ("duration in hours", CH, "40 minutes (20 talk, 20 exercise)", "1 hour", "no duration line"),
    ("no speaker notes", CH, "<summary>Speaker notes</summary>", "<summary>Notes</summary>", "no speaker notes"),
    ("unclosed details", CH, "Say this.\n\n</details>", "Say this.", "an unclosed block"),
    ("no exercise heading", CH, "## Exercise", "## Try it", "no exercise section"),
    ("solution shown openly", CH, "<details>\n<summary>Solution</summary>", "<div>", "is shown openly"),
    ("starter hidden", CH, "```rust,ignore\n{{#include ../examples/ch01_exercise.rs:task}}\n```",
     "<details><summary>Starter</summary>\n\n```rust,ignore\n{{#include ../examples/ch01_exercise.rs:task}}\n```\n\n</details>",
     "is hidden in a <details> block"),
    ("pasted RESULT line", CH, "Say this.", "Say this.\n\nRESULT scenario=x client=y sent=1 received=1 lost=0 noticed=0", "a RESULT line is pasted"),
    ("no claims link", CH, "[appendix](appendix-claims.md)", "the appendix", "no link to the claims appendix"),
    ("runnable rust block", CH, "```rust,ignore\n{{#include ../examples/ch01_topic.rs:main}}",
     "```rust\n{{#include ../examples/ch01_topic.rs:main}}", "cannot run in the Rust playground"),
    ("pasted code", CH, "## Exercise", "```rust,ignore\n" + "let x = 1;\n" * 9 + "```\n\n## Exercise", "is pasted"),
    ("missing anchor", CH, "ch01_topic.rs:main", "ch01_topic.rs:mian", "anchor 'mian' not found"),
    ("missing include", CH, "ch01_topic.rs:main", "ch01_topics.rs:main", "include target missing"),
    ("include from target/", CH, "Say this.", "{{#include ../target/out.txt}}", "a generated file that a fresh clone does not have"),
    ("text glued to a table", GUIDE, "| 10:00 | end | |\n", "| 10:00 | end | |\nThat is all.\n", "becomes one of its rows"),
    ("unused example", "examples/ch01_extra.rs", None, "fn main() {}\n", "no page includes it"),
    ("starter without todo", "examples/ch01_exercise.rs", 'todo!("your code")', "0", "has todo!()"),
    ("solution without tests", "examples/ch01_solution.rs", "#[cfg(test)]", "", "#[cfg(test)] module"),
    ("no solution file", "examples/ch01_solution.rs", "", None, "has no solution"),
    ("test named but missing", "tests/ch01_topic.rs", "fn it_works", "fn it_worked", "no fn it_works"),
    ("command names a missing example", "src/running-the-lab.md", "Text.", "`cargo run --example ch01_nope`",
     "`--example ch01_nope`, but there is no examples/ch01_nope"),
    ("command names a missing test", "src/running-the-lab.md", "Text.", "`cargo test --test nope`",
     "there is no tests/nope"),
    ("ignored tests run without --include-ignored", "examples/ch01_solution.rs", "#[test]\n    fn task_is_one",
     "#[test]\n    #[ignore = \"needs a server\"]\n    fn task_is_one", "passes while testing nothing"),
    ("anchor ends inside an item", "examples/ch01_topic.rs", "fn main() {\n    // ANCHOR: main\n",
     "// ANCHOR: main\nfn main() {\n", "anchor 'main' (lines 1-5, shown by src/ch01-topic.md line 6) cuts an item: '{' opened at line 2 is not closed"),
    ("anchor starts inside an item", "examples/ch01_topic.rs", "    // ANCHOR_END: main\n}\n", "}\n// ANCHOR_END: main\n",
     "'}' at line 5 closes what was opened before the region"),
    ("anchor end on the closing brace's line", "examples/ch01_topic.rs", "fn main() {\n    // ANCHOR: main\n    println!(\"hi\");\n    println!(\"there\");\n    // ANCHOR_END: main\n}",
     "// ANCHOR: main\nfn main() {\n    println!(\"hi\");\n    println!(\"there\");\n} // ANCHOR_END: main", "'{' opened at line 2 is not closed before the region ends (line 5)"),
    ("snip on the wrong side of the cut", "examples/ch01_topic.rs", "fn main() {\n    // ANCHOR: main\n",
     "// ANCHOR: main\n// --snip--\nfn main() {\n", "'{' opened at line 3 is not closed"),
    ("file mostly harness", "examples/ch01_topic.rs", "}\n", "}\n" + "fn harness() {}\n" * 10,
     "chapters show 2 of its 14 lines (14%); at least 50%"),
    ("file over 500 lines", "lab/big.rs", None, "// a line\n" * 501, "501 lines; at most 500: split it by job"),
    ("chapter shows too much code", "examples/ch01_topic.rs", "    println!(\"there\");\n", "    println!(\"there\");\n" * 400,
     "shows 407 lines of code; at most 350"),
    ("claim checked by a helper", "src/claims/ch01.md", "::it_works`", "::helper`", "fn helper is not a #[test]"),
    ("claims row without test", "src/claims/ch01.md", "`tests/ch01_topic.rs::it_works`", "see chapter 1", "names no test"),
    ("chapter without claims", "src/claims/ch01.md", None, "", "no claims: add rows"),
    ("chapter 2 without its diagram", "src/ch02-topic.md", None,
     GOOD[CH].replace("```mermaid", "```text"), "no ```mermaid diagram: this chapter shows the dropped read buffer"),
    ("page not in summary", "src/extra.md", None, "# Extra\n", "not listed in SUMMARY.md"),
    ("guide minutes differ", GUIDE, "| 40 |", "| 45 |", "but the chapter says 40"),
    ("guide clock wrong", GUIDE, "| 09:55 |", "| 09:50 |", "the row above ends at 09:55"),
    ("guide misses a chapter", GUIDE, "| 09:15 | [A chapter](ch01-topic.md) | 40 |", "| 09:15 | Lunch | 40 |",
     "no schedule covers every chapter"),
    ("no schedule", GUIDE, "| start | segment | minutes |", "| when | segment | time |", "no schedule table"),
]


def write(root, files):
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body))


def check(root):
    run = subprocess.run([sys.executable, str(CHECKER), "--root", str(root)], capture_output=True, text=True)
    return run.returncode, run.stdout + run.stderr


failures = []
with tempfile.TemporaryDirectory() as tmp:
    good = pathlib.Path(tmp) / "good"
    write(good, GOOD)
    code, out = check(good)
    if code != 0:
        failures.append(f"the correct fixture fails:\n{out}")
    for figure in ["  50%     2/4     examples/ch01_topic.rs", "(exempt: an exercise", "      8 ch01-topic.md", "over 500 lines:\n  none"]:
        if figure not in out:
            failures.append(f"the correct fixture's figures lack {figure!r}:\n{out}")
    for name, file, old, new, expected in BROKEN:
        root = pathlib.Path(tmp) / name.replace(" ", "-")
        write(root, GOOD)
        path = root / file
        if new is None:
            path.unlink()
        elif old is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new)
        else:
            text = path.read_text()
            if old not in text:
                failures.append(f"{name}: the fixture has no {old!r} to replace (fix this test)")
                continue
            path.write_text(text.replace(old, new, 1))
        code, out = check(root)
        if code == 0 or expected not in out:
            failures.append(f"{name}: expected exit 1 and {expected!r}, got exit {code}:\n{out}")

    # --fix-schedule turns a guide that disagrees with its chapters into one that agrees.
    root = pathlib.Path(tmp) / "fix-schedule"
    write(root, GOOD)
    guide = root / GUIDE
    guide.write_text(guide.read_text().replace("| 40 |", "| 45 |").replace("| 09:55 |", "| 10:05 |"))
    run = subprocess.run([sys.executable, str(CHECKER), "--root", str(root), "--fix-schedule"], capture_output=True, text=True)
    if run.returncode != 0 or guide.read_text() != textwrap.dedent(GOOD[GUIDE]):
        failures.append(f"--fix-schedule did not restore the schedule (exit {run.returncode}):\n{run.stdout}{guide.read_text()}")

    # A schedule over two days: an end row, then a new day at its own time; --fix-schedule
    # keeps the second day's start and the checker accepts it.
    root = pathlib.Path(tmp) / "two-days"
    write(root, GOOD)
    guide = root / GUIDE
    two_days = guide.read_text().replace(
        "| 10:00 | end | |\n", "| 10:00 | end of day 1 | |\n| 09:00 | [Running the lab](running-the-lab.md) again | 15 |\n| 09:15 | end | |\n"
    )
    guide.write_text(two_days)
    run = subprocess.run([sys.executable, str(CHECKER), "--root", str(root), "--fix-schedule"], capture_output=True, text=True)
    if run.returncode != 0 or guide.read_text() != two_days:
        failures.append(f"a two-day schedule is not kept by --fix-schedule (exit {run.returncode}):\n{run.stdout}{guide.read_text()}")

    # Anchors that cut an item and say so with `// --snip--`, and brackets that only look
    # unbalanced (in strings, char literals, comments, anchor lines mdBook leaves out), pass.
    for name, old, new in [
        ("snip where the region ends inside an item", "fn main() {\n    // ANCHOR: main\n    println!(\"hi\");\n",
         "// ANCHOR: main\nfn main() {\n    println!(\"hi\");\n    // --snip--\n"),
        ("snip where the region starts inside an item", "    println!(\"there\");\n    // ANCHOR_END: main\n}\n",
         "    // --snip--\n    println!(\"there\");\n}\n// ANCHOR_END: main\n"),
        ("brackets in strings, chars and comments", "    println!(\"hi\");\n",
         "    println!(\"({{[\"); // )\n    let _ = ('}', r#\"]\"#, b'(', \"\\\"(\");\n    /* { */\n    fn f<'a>(x: &'a str) -> &'a str { x }\n    // ANCHOR: inner (\n"),
    ]:
        root = pathlib.Path(tmp) / name.replace(" ", "-")
        write(root, GOOD)
        topic = root / "examples/ch01_topic.rs"
        if old not in topic.read_text():
            failures.append(f"{name}: the fixture has no {old!r} to replace (fix this test)")
            continue
        topic.write_text(topic.read_text().replace(old, new, 1))
        code, out = check(root)
        if code != 0:
            failures.append(f"{name}: should pass, got exit {code}:\n{out}")

    # Lesson files and harness files: the figures are printed; a whole-file include shows every
    # line but its anchor comments; a ":N:M" include shows those lines. (EXEMPT_SIZE is empty
    # since issue 18's splits; the EXEMPT_* lookup is checked by an exercise's share shown.)
    for name, change, expect_in_output in [
        ("whole-file include", lambda root: (root / CH).write_text((root / CH).read_text().replace("ch01_topic.rs:main}}", "ch01_topic.rs}}", 1)),
         " 4/4     examples/ch01_topic.rs"),
        ("line-range include", lambda root: (root / CH).write_text((root / CH).read_text().replace("ch01_topic.rs:main}}", "ch01_topic.rs:1:4}}", 1)),
         " 3/4     examples/ch01_topic.rs"),
    ]:
        root = pathlib.Path(tmp) / name.replace(" ", "-")
        write(root, GOOD)
        change(root)
        code, out = check(root)
        if code != 0 or expect_in_output not in out:
            failures.append(f"{name}: should pass and print {expect_in_output!r}, got exit {code}:\n{out}")

    # ... and the same #[ignore]d tests, run with `-- --include-ignored`, are fine.
    root = pathlib.Path(tmp) / "include-ignored"
    write(root, GOOD)
    solution = root / "examples/ch01_solution.rs"
    solution.write_text(solution.read_text().replace("#[test]\n", "#[test]\n    #[ignore = \"needs a server\"]\n", 1))
    lab_page = root / "src/running-the-lab.md"
    lab_page.write_text(lab_page.read_text().replace("--example ch01_solution`", "--example ch01_solution -- --include-ignored`"))
    code, out = check(root)
    if code != 0:
        failures.append(f"#[ignore]d tests run with --include-ignored are reported:\n{out}")

if failures:
    print(f"test_check_book: {len(failures)} failure(s):")
    for failure in failures:
        print("  - " + failure.replace("\n", "\n    "))
    sys.exit(1)
print(f"test_check_book: the correct fixture passes, {len(BROKEN)} broken ones are reported: ok")
