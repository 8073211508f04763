#!/usr/bin/env python3
"""The plumbing of ci/canary.sh, one subcommand a step, so that --self-test can check each.

    python3 ci/canary.py loosen Cargo.toml        # rewrite the redis pins in place (see LOOSEN)
    python3 ci/canary.py versions Cargo.lock      # the redis versions a lock file resolved
    python3 ci/canary.py report LOG CLAIMS_DIR    # which claims differ, from a cargo test log

`report` exits 0 when every test passed, 1 when some test failed (it names the claims rows
that name it), 2 when the log holds no test result at all (the build or the run broke).
"""
import pathlib
import re
import sys

# Which pins the canary moves, and to what. The main dependency goes to the newest 1.x; the
# `redis_2_0` dev-dependency to the newest 2.x release, or the newest 2.0.0 pre-release while
# there is no 2.0.0 (Cargo matches a pre-release only against a requirement that names one
# of the same x.y.z, so a 2.1.0-rc would not be taken: only releases and 2.0.0-*).
LOOSEN = [
    (re.compile(r'^(redis = \{ version = ")=1\.[^"]*(")', re.M), r"\g<1>1\g<2>"),
    (
        re.compile(r'^(redis_2_0 = \{ package = "redis", version = ")=(2\.[^"]*)(")', re.M),
        r"\g<1>>=\g<2>, <3\g<3>",
    ),
]

TEST_REF = re.compile(r"`((?:tests|examples)/[\w./-]+\.rs)::(\w+)`")
RUNNING = re.compile(r"^\s*Running (?:unittests )?(\S+\.rs) \(")
RESULT = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)", re.M)
FAILURE_BLOCK = re.compile(r"^---- (\S+) stdout ----\n(.*?)(?=^---- |^failures:\s*$|^test result:)", re.M | re.S)


def loosen(manifest):
    path = pathlib.Path(manifest)
    text = path.read_text()
    for pattern, replacement in LOOSEN:
        text, count = pattern.subn(replacement, text)
        if count != 1:
            sys.exit(f"canary: {manifest}: expected one pin matching {pattern.pattern}, found {count}")
    path.write_text(text)


def versions(lockfile):
    """Every version of the `redis` package in a Cargo.lock, oldest first."""
    text = pathlib.Path(lockfile).read_text()
    found = re.findall(r'^name = "redis"\nversion = "([^"]+)"', text, re.M)

    def key(version):
        core, _, pre = version.partition("-")
        return tuple(int(p) for p in core.split(".")), pre == "", pre

    return sorted(found, key=key)


def claims_rows(claims_dir):
    """(file::fn) -> [(claims file, line number, claim text)]."""
    rows = {}
    for path in sorted(pathlib.Path(claims_dir).glob("*.md")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.startswith("|"):
                continue
            claim = line.strip("| ").split(" | ")[0]
            for file, name in TEST_REF.findall(line):
                rows.setdefault(f"{file}::{name}", []).append((path.name, number, claim))
    return rows


def parse_log(log):
    """[(source file, test path, outcome, first lines of its failure)] from `cargo test` output."""
    results, current = [], None
    failures = {}
    for match in FAILURE_BLOCK.finditer(log):
        # From the panic on: its place and message, up to a backtrace or a note.
        lines = [l for l in match.group(2).splitlines() if l.strip()]
        start = next((i for i, l in enumerate(lines) if " panicked at " in l), 0)
        kept = []
        for line in lines[start:]:
            if line.startswith(("stack backtrace:", "note: ")):
                break
            kept.append(line)
        failures.setdefault(match.group(1), kept[:3])
    for line in log.splitlines():
        running = RUNNING.match(line)
        if running:
            current = running.group(1)
            continue
        result = RESULT.match(line)
        if result and current:
            name, outcome = result.groups()
            results.append((current, name, outcome, failures.get(name, [])))
    return results


def report(log_path, claims_dir):
    log = pathlib.Path(log_path).read_text(errors="replace")
    results = parse_log(log)
    if not results:
        print("canary: the log holds no test results: the build or the test run broke (see the log)")
        return 2
    rows = claims_rows(claims_dir)
    failed = [r for r in results if r[2] == "FAILED"]
    passed = sum(1 for r in results if r[2] == "ok")
    print(f"canary: {len(results)} tests, {passed} passed, {len(failed)} failed")
    differs = 0
    for source, name, _outcome, first_lines in failed:
        module, _, function = name.rpartition("::")
        key = f"{source}::{function}"
        where = f" (module {module})" if module else ""
        named = rows.get(key, [])
        if named:
            for claims_file, number, claim in named:
                differs += 1
                print(f"CLAIM DIFFERS  {key}{where}  [src/claims/{claims_file}:{number}]")
                print(f"  claim: {claim}")
        else:
            print(f"TEST FAILS     {key}{where}  [no claims row names it]")
        for line in first_lines:
            print(f"  | {line.strip()[:200]}")
    if failed:
        print(f"canary: {differs} claim row(s) differ, {len(failed)} test(s) failed")
        return 1
    print("canary: every claim holds")
    return 0


def main(argv):
    if len(argv) == 3 and argv[1] == "loosen":
        loosen(argv[2])
        return 0
    if len(argv) == 3 and argv[1] == "versions":
        print(" ".join(versions(argv[2])))
        return 0
    if len(argv) == 4 and argv[1] == "report":
        return report(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
