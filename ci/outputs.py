#!/usr/bin/env python3
"""The book's outputs: every program output a chapter shows is a file under src/generated/,
written by a run, and CI checks that its shape still matches what the program prints now.

    python3 ci/outputs.py regen [NAME...]   # full runs, rewrite the files (minutes; by hand)
    python3 ci/outputs.py check             # quick runs (LAB_QUICK=1), compare shapes (CI)
    python3 ci/outputs.py self-test         # prove that check fails on a renamed scenario
    python3 ci/outputs.py list              # every output, and the command that writes it

A generated file starts with `$ <command>`: it names the command that wrote it, and reads
naturally at the top of the ```console block that includes it. An excerpt (only some lines,
RESULT lines with fewer keys, "(... N more lines ...)") is made here, never by hand.

Shape, compared line by line for every line of the file (numbers may differ):
  - a RESULT line: its scenario and client must be printed now, with the same keys in the
    same order (a shortened line, with `...`, with its keys in that order among them);
  - a line without digits: printed now, word for word (headers, fixed sentences);
  - any other line: some line printed now starts with the same first word (numbers in it
    may differ).

ci/regen-outputs.sh runs `regen`; ci/test.sh runs `check` and `self-test`.
"""

import dataclasses
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "src" / "generated"
RUNS = ROOT / "target" / "example-runs"  # written by tests/examples.rs (quick mode)


@dataclasses.dataclass
class Output:
    """One generated file: which command writes it, and which part of its output it keeps."""

    name: str  # src/generated/<name>.txt
    command: str  # as the reader would type it, shown on the first line
    keep: list = dataclasses.field(default_factory=list)  # regexes; empty: every line
    drop: list = dataclasses.field(default_factory=list)  # regexes of lines to leave out
    result_keys: list = None  # keep only these RESULT keys (and `...` for the rest)
    max_lines: int = 0  # 0: no limit; else an excerpt with "(... N more lines ...)"
    stderr: bool = False  # the output is on stderr (compiler and cargo errors)
    prepare: str = ""  # a shell step before the command (see `compile_error`)
    quick: bool = True  # CI re-runs the command in quick mode to compare the shape
    replace: list = dataclasses.field(default_factory=list)  # (regex, replacement), every line
    markdown: bool = False  # a table the chapter renders: .md, the command in a comment
    section: tuple = None  # (start regex, end regex): only the lines from one to the other
    both: bool = False  # stdout and then stderr, as a terminal shows an error exit
    exit_code: bool = False  # end with `$ echo $?` and the command's exit code
    cleanup: str = ""  # a shell step after the command (stop what `prepare` started)

    def path(self):
        return GENERATED / f"{self.name}.{'md' if self.markdown else 'txt'}"

    def first_line(self):
        return f"<!-- $ {self.command} -->" if self.markdown else f"$ {self.command}"


# The standard RESULT keys first: every shortened RESULT line keeps them.
BASE = ["scenario", "client", "sent", "received", "lost", "noticed"]
# Chapter 9's Sentinel scenarios: when the subscriber heard again, against the failover's times.
SENTINEL_KEYS = ["followed", "promoted_after_ms", "switch_master_after_ms", "resumed_after_ms",
                 "deaf_ms"]

# Copy chapter 3's stream steps without its `pin!` line into a temporary example, so that
# the compiler shows the error the chapter quotes; removed again after the build.
PIN_ERROR_EXAMPLE = "examples/zz_pin_error.rs"
PIN_ERROR = (
    f"grep -v 'let mut evens = pin!(evens);' examples/ch03_stream_steps.rs > {PIN_ERROR_EXAMPLE}"
)

OUTPUTS = [
    Output("ch00-first-result", "cargo run --example ch00_first_result"),
    Output("ch01-lost-messages", "cargo run --example ch01_lost_messages",
           max_lines=22),
    Output("ch01-cargo-tree", "cargo tree -i redis", stderr=True,
           keep=[r"^error", r"^help", r"^\s+redis@"]),
    Output("ch02-dropped-buffer", "cargo run --example ch02_dropped_buffer"),
    Output("ch02-other-losses", "cargo run --example ch02_other_losses"),
    Output("ch03-steps-lazy", "cargo run --example ch03_stream_steps", keep=[r"^step 0"]),
    Output("ch03-pin-error", f"cargo build --example {Path(PIN_ERROR_EXAMPLE).stem}",
           stderr=True, prepare=PIN_ERROR, max_lines=4,
           replace=[("zz_pin_error", "ch03_stream_steps")],
           keep=[r"^error\[E0277\].*cannot be unpinned", r"^\s+= help: within",
                 r"^\s+`Unpin` is not implemented", r"^\s+= note: consider using the `pin!`",
                 r"^\s+consider using `Box::pin`"]),
    Output("ch03-steps-take", "cargo run --example ch03_stream_steps",
           keep=[r"^step 4", r"^payloads that were not ours"]),
    Output("ch03-steps-drop", "cargo run --example ch03_stream_steps",
           keep=[r"^subscribers "]),
    Output("ch03-steps-ready-chunks", "cargo run --example ch03_stream_steps",
           keep=[r"^step 5"]),
    Output("ch03-steps-chunks-timeout", "cargo run --example ch03_stream_steps",
           keep=[r"^step 6"]),
    Output("ch03-cancellation", "cargo run --example ch03_cancellation"),
    Output("ch03-gaps", "cargo run --example ch03_gaps", drop=[r"^Redis at"]),
    Output("ch04-into-on-message", "cargo run --example ch04_into_on_message",
           drop=[r"^Redis at"]),
    Output("ch04-split", "cargo run --example ch04_split", drop=[r"^Redis at"]),
    Output("ch04-patterns", "cargo run --example ch04_patterns", drop=[r"^Redis at"]),
    Output("ch04-resp3", "cargo run --example ch04_resp3", drop=[r"^Redis at"]),
    Output("ch04-race", "cargo run --example ch04_race", drop=[r"^Redis at"]),
    Output("ch04-confirmations", "cargo run --example ch04_confirmations",
           drop=[r"^Redis at"]),
    Output("ch05-old-slow-stream-log",
           "cargo run --example ch05_backpressure -- --scenario old-slow-stream",
           keep=[r"^server log:"],
           replace=[(r"^server log: .*?(age=\S+ idle=\S+ flags=\S+).*?( sub=\S+).*?"
                     r"(omem=\S+ tot-mem=\S+).*?(scheduled .*)$",
                     r"server log: ... \1 ...\2 ... \3 ... \4")]),
    Output("ch05-old-slow-stream", "cargo run --example ch05_backpressure -- --scenario old-slow-stream",
           keep=[r"^old-slow-stream:", r"^RESULT"],
           result_keys=BASE + ["read", "disconnects", "tail_lost", "queued_for", "unheard",
                               "max_omem_kb", "limit_fired", "rss_growth_mb"]),
    Output("ch05-killed-connection",
           "cargo run --example ch05_backpressure -- --scenario resp3-drop-oldest,queue-drop-oldest --seconds 2 --kill-subscriber-at 1",
           keep=[r"^publisher:", r"^killed", r"^(resp3|queue)-drop-oldest:", r"^RESULT"],
           result_keys=BASE + ["read", "disconnects", "unheard", "dropped", "gaps_missing",
                               "resyncs"]),
    Output("ch06-minimal", "cargo run --example ch06_minimal_demo", drop=[r"^Redis at"],
           result_keys=BASE + ["runtime", "processed", "dropped", "missing", "bad",
                               "received_by_subscriber", "unknown_gaps", "reconnects",
                               "buffer_limit_disconnects", "rss_idle_mb", "rss_peak_mb"]),
    Output("ch06-help", "cargo run --example ch06_production_subscriber -- --help",
           max_lines=13),
    Output("ch06-demo", "cargo run --example ch06_production_subscriber -- --publishers 3"),
    Output("ch06-demo-small-queue",
           "cargo run --example ch06_production_subscriber -- --publishers 3 --queue 1000 --work-us 20 --demo-messages 20000",
           keep=[r"^RESULT"]),
    Output("ch06-wrong-password",
           "cargo run --example ch06_production_subscriber -- --url redis://:hunter2@127.0.0.1:6390/ -c orders",
           both=True, exit_code=True,
           prepare="redis-server --port 6390 --bind 127.0.0.1 --requirepass secret --save '' "
                   "--appendonly no --daemonize yes --pidfile /tmp/ch06-outputs-6390.pid "
                   "&& sleep 0.5",
           cleanup="kill $(cat /tmp/ch06-outputs-6390.pid) 2>/dev/null; sleep 0.3"),
    Output("ch06-unreachable",
           "cargo run --example ch06_production_subscriber -- --url redis://127.0.0.1:6391/ -c orders",
           both=True, exit_code=True),
    Output("ch06-faults-client-kill", "cargo run --release --example ch06_faults",
           section=(r"^scenario ClientKill:", r"^RESULT scenario=client-kill "), drop=[r"^  \(\d"]),
    Output("ch06-faults-restart", "cargo run --release --example ch06_faults",
           section=(r"^scenario Restart:", r"^RESULT scenario=restart "), drop=[r"^  \(\d"]),
    Output("ch06-faults-pause-3s", "cargo run --release --example ch06_faults",
           section=(r"^scenario Pause:", r"^RESULT scenario=pause-3s "), drop=[r"^  \(\d"]),
    Output("ch06-faults-buffer-limit", "cargo run --release --example ch06_faults",
           section=(r"^scenario BufferLimit:", r"^RESULT scenario=output-buffer-limit "),
           drop=[r"^  \(\d"]),
    Output("ch06-faults-hanging-handler", "cargo run --release --example ch06_faults",
           section=(r"^scenario Hang:", r"^RESULT scenario=hanging-handler "), drop=[r"^  \(\d"]),
    Output("ch06-faults-disconnect-policy", "cargo run --release --example ch06_faults",
           section=(r"^scenario DisconnectPolicy:", r"^RESULT scenario=disconnect-policy "), drop=[r"^  \(\d"]),
    Output("ch06-faults-bad-payloads", "cargo run --release --example ch06_faults",
           section=(r"^scenario BadPayloads:", r"^RESULT scenario=bad-payloads "), drop=[r"^  \(\d"]),
    Output("ch06-faults-shutdown-mid-burst", "cargo run --release --example ch06_faults",
           section=(r"^scenario Shutdown:", r"^RESULT scenario=shutdown-mid-burst "), drop=[r"^  \(\d"]),
    Output("ch06-faults-silent-server", "cargo run --release --example ch06_faults",
           section=(r"^scenario SilentServer:", r"^RESULT scenario=silent-server "), drop=[r"^  \(\d"]),
    Output("ch06-faults-many-publishers", "cargo run --release --example ch06_faults",
           keep=[r"^RESULT scenario=many-publishers "]),
    Output("ch06-broadcast-lagged", "cargo run --example ch06_broadcast_lagged"),
    Output("ch08-at-most-once", "cargo run --example ch08_at_most_once", drop=[r"^Redis at"]),
    Output("ch08-trimming", "cargo run --example ch08_trimming",
           drop=[r"^Redis at", r"^RESULT scenario=maxlen-"]),
    Output("ch08-streams-crash", "cargo run --example ch08_streams_crash", drop=[r"^Redis at"]),
    Output("ch08-compare", "cargo run --release --example ch08_compare",
           drop=[r"^Redis at"], keep=[r"^\d+ messages of", r"^RESULT"]),
    Output("ch08-compare-table", "cargo run --release --example ch08_compare", keep=[r"^\|"],
           markdown=True),
    Output("ch09-sharded-all-shards", "cargo run --example ch09_sharded",
           keep=[r"^cluster of 6 nodes", r"^RESULT scenario=sharded-all-shards "]),
    Output("ch09-throughput", "cargo run --example ch09_sharded",
           keep=[r"^RESULT scenario=throughput-"]),
    Output("ch09-broadcast", "cargo run --example ch09_sharded",
           keep=[r"^RESULT scenario=broadcast-"]),
    Output("ch09-spublish-replica", "cargo run --example ch09_sharded",
           keep=[r"^RESULT scenario=spublish-reply-replica-subscriber "]),
    Output("ch09-failover-library-only", "cargo run --example ch09_failover",
           keep=[r"^cluster of 6 nodes", r"^failover-library-only:",
                 r"^RESULT scenario=failover-library-only "]),
    Output("ch09-restart-library-only", "cargo run --example ch09_failover",
           keep=[r"^restart-library-only:", r"^RESULT scenario=restart-library-only "]),
    Output("ch09-failover-after-command", "cargo run --example ch09_failover",
           keep=[r"^failover-library-after-command:",
                 r"^RESULT scenario=failover-library-after-command "]),
    Output("ch09-failover-app-resubscribe", "cargo run --example ch09_failover",
           keep=[r"^failover-app-resubscribe:", r"^RESULT scenario=failover-app-resubscribe "]),
    Output("ch09-root-cause", "cargo run --example ch09_failover_root_cause"),
    Output("ch09-workarounds-failover", "cargo run --example ch09_failover_workarounds",
           keep=[r"^failover:", r"^RESULT scenario=failover-"],
           result_keys=BASE + ["back_after_ms", "resumed_after_ms", "subscribed_on",
                               "duplicates"]),
    Output("ch09-workarounds-restart", "cargo run --example ch09_failover_workarounds",
           keep=[r"^restart:", r"^RESULT scenario=restart-"],
           result_keys=BASE + ["back_after_ms", "resumed_after_ms", "subscribed_on",
                               "duplicates"]),
    Output("ch09-sentinel-library-only", "cargo run --example ch09_sentinel",
           keep=[r"^failover-library-only:", r"^RESULT scenario=failover-library-only "],
           result_keys=BASE + SENTINEL_KEYS),
    Output("ch09-sentinel-switch-master", "cargo run --example ch09_sentinel",
           keep=[r"^failover-switch-master:", r"^RESULT scenario=failover-switch-master "],
           result_keys=BASE + SENTINEL_KEYS),
    Output("ch09-sentinel-replica", "cargo run --example ch09_sentinel",
           keep=[r"^(failover-replica-|replica-killed-)\S+: killed",
                 r"^RESULT scenario=(failover-replica-|replica-killed-)"],
           result_keys=BASE + SENTINEL_KEYS),
    Output("intro-first-result", "cargo run --example ch01_lost_messages",
           keep=[r"^RESULT scenario=loop-burst-0ms client=redis-0\.25\.5 "], result_keys=BASE),
    Output("ch10-keyspace", "cargo run --example ch10_keyspace", drop=[r"^Redis at"],
           result_keys=BASE + ["missed_keys", "kills", "subscribes", "repaired"]),
    Output("ch10-tracking-probes", "cargo run --example ch10_client_tracking",
           section=(r"^\| reader \| probe", r"^\| `tracking-bcast`"), markdown=True),
    Output("ch10-tracking-load", "cargo run --example ch10_client_tracking",
           section=(r"^\| reader \| load", r"^\| `tracking-bcast`"), markdown=True),
    Output("ch10-tracking-client-kill", "cargo run --example ch10_client_tracking",
           keep=[r"^RESULT scenario=probe-client-kill-"],
           result_keys=BASE + ["stale_reads", "first_fresh_ms", "flushes"]),
    Output("ch10-exercise", "cargo run --example ch10_solution", drop=[r"^Redis at"]),
    Output("ch10-axum-service", "cargo run --example ch10_axum_service",
           drop=[r"^Redis at", r"^final:"]),
]

RESULT = re.compile(r"^\s*RESULT\s+(.*)$")
MORE = re.compile(r"^\(\.\.\. \d+ more lines")


def command_env(quick):
    env = dict(os.environ, LAB_QUICK="1" if quick else "0", CARGO_TERM_COLOR="never",
               RUST_BACKTRACE="0", RUST_LIB_BACKTRACE="0")
    env.pop("REDIS_URL", None)  # outputs come from lab-owned servers
    return env


def run(output, quick):
    """The command's output lines (stdout, or stderr for compiler and cargo errors)."""
    argv = shlex.split(output.command)
    if argv[:2] == ["cargo", "run"]:
        argv.insert(2, "--quiet")
    try:
        if output.prepare:
            subprocess.run(output.prepare, shell=True, cwd=ROOT, check=True)
        done = subprocess.run(argv, cwd=ROOT, env=command_env(quick), capture_output=True,
                              text=True, timeout=1800)
    finally:
        Path(ROOT / PIN_ERROR_EXAMPLE).unlink(missing_ok=True)
        if output.cleanup:
            subprocess.run(output.cleanup, shell=True, cwd=ROOT)
    if output.both:
        text = done.stdout + done.stderr
    else:
        text = done.stderr if output.stderr else done.stdout
    failing_is_the_point = output.stderr or output.both
    if not failing_is_the_point and done.returncode != 0:
        sys.exit(f"outputs: `{output.command}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = text.splitlines()
    if output.exit_code:
        lines += ["$ echo $?", str(done.returncode)]
    return lines


def shorten(line, keys):
    match = RESULT.match(line)
    if not match or keys is None:
        return line
    fields = match.group(1).split()
    kept, cut = [], False
    for field in fields:
        if field.split("=", 1)[0] in keys:
            if cut:
                kept.append("...")
                cut = False
            kept.append(field)
        else:
            cut = True
    if cut:
        kept.append("...")
    return "RESULT " + " ".join(kept)


def excerpt(output, lines):
    lines = [line.rstrip() for line in lines if not line.startswith("PROGRESS ")
             and not line.startswith("SAMPLES ")]
    if output.section:
        start, end = output.section
        first = next((i for i, l in enumerate(lines) if re.search(start, l)), None)
        if first is None:
            return []
        last = next((i for i in range(first, len(lines)) if re.search(end, lines[i])),
                    len(lines) - 1)
        lines = lines[first:last + 1]
    if output.keep:
        lines = [line for line in lines if any(re.search(k, line) for k in output.keep)]
    lines = [line for line in lines if not any(re.search(d, line) for d in output.drop)]
    lines = [shorten(line, output.result_keys) for line in lines]
    for pattern, replacement in output.replace:
        lines = [re.sub(pattern, replacement, line) for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    if output.max_lines and len(lines) > output.max_lines:
        more = len(lines) - output.max_lines
        lines = lines[: output.max_lines] + [f"(... {more} more lines ...)"]
    return lines


def regen(names):
    cache = {}
    for output in OUTPUTS:
        if names and output.name not in names:
            continue
        key = (output.command, output.stderr, output.prepare)
        if key not in cache:
            print(f"outputs: running {output.command}", flush=True)
            cache[key] = run(output, quick=False)
        lines = excerpt(output, cache[key])
        if not lines:
            sys.exit(f"outputs: {output.name}: nothing left of `{output.command}`'s output")
        GENERATED.mkdir(parents=True, exist_ok=True)
        output.path().write_text("\n".join([output.first_line()] + lines) + "\n")
        print(f"outputs: wrote {output.path().relative_to(ROOT)} ({len(lines)} lines)")


# --- Shapes -------------------------------------------------------------------------------

def result_shape(line):
    fields = RESULT.match(line).group(1).split()
    pairs = [f.split("=", 1) for f in fields if f != "..." and "=" in f]
    values = dict(pairs)
    return values.get("scenario"), values.get("client"), [k for k, _ in pairs], "..." in fields


def first_word(line):
    """A line's first word, its numbers made alike: `30000 messages` and `5000 messages`."""
    return re.sub(r"\d+(\.\d+)?", "#", line.split()[0])


def is_subsequence(small, big):
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


def shape_problems(shown, printed):
    """Lines of `shown` (a generated file, without its command line) whose shape is not in
    `printed` (what the program prints now)."""
    results = [result_shape(l) for l in printed if RESULT.match(l)]
    words = {first_word(l) for l in printed if l.split()}
    texts = {" ".join(l.split()) for l in printed}
    problems = []
    for line in shown:
        if not line.strip() or MORE.match(line):
            continue
        if RESULT.match(line):
            scenario, client, keys, shortened = result_shape(line)
            same = [r for r in results if r[0] == scenario and r[1] == client]
            if not same:
                problems.append(f"no RESULT line for scenario={scenario} client={client} now")
            elif not any((is_subsequence(keys, r[2]) if shortened else keys == r[2])
                         for r in same):
                problems.append(f"scenario={scenario} client={client}: keys now "
                                f"{' '.join(same[0][2])}, shown {' '.join(keys)}")
        elif not re.search(r"\d", line):
            if " ".join(line.split()) not in texts:
                problems.append(f"this line is not printed any more: {line.strip()!r}")
        elif first_word(line) not in words:
            problems.append(f"no line starts with {line.split()[0]!r} any more: {line.strip()!r}")
    return problems


def printed_now(output):
    """What the command prints in quick mode; the run of tests/examples.rs when it is the
    plain `cargo run --example NAME` it already ran."""
    plain = re.fullmatch(r"cargo run (?:--release )?--example (\w+)", output.command)
    if plain and not output.stderr:
        saved = RUNS / f"{plain.group(1)}.txt"
        if saved.exists():
            text = saved.read_text()
            stdout = text.split("--- stdout\n", 1)[-1].split("\n--- stderr\n", 1)[0]
            return excerpt(dataclasses.replace(output, max_lines=0, result_keys=None),
                           stdout.splitlines())
    return excerpt(dataclasses.replace(output, max_lines=0, result_keys=None),
                   run(output, quick=True))


def check(outputs):
    failures = []
    for output in outputs:
        path = output.path()
        rel = path.relative_to(ROOT)
        if not path.exists():
            failures.append(f"{rel}: missing; write it with `python3 ci/outputs.py regen {output.name}`")
            continue
        shown = path.read_text().splitlines()
        if not shown or shown[0] != output.first_line():
            failures.append(f"{rel}: the first line must be `{output.first_line()}`")
            continue
        if not output.quick:
            continue
        problems = shape_problems(shown[1:], printed_now(output))
        for problem in problems:
            failures.append(f"{rel}: {problem}")
        if problems:
            failures.append(f"{rel}: regenerate it with `python3 ci/outputs.py regen "
                            f"{output.name}` (runs `{output.command}`)")
    return failures


def unlisted():
    """Generated .txt files that no output writes: stale, or written by hand."""
    known = {o.path() for o in OUTPUTS}
    # (The .md tables and charts that examples write themselves, with --write flags, are
    # listed in ci/regen-outputs.sh.)
    return [p for p in GENERATED.glob("*.txt") if p not in known]


def self_test():
    """A renamed scenario, a renamed key and a changed header must each fail the check."""
    shown = ["RESULT scenario=loop-burst client=redis-1.8.1 sent=1 received=1 lost=0 noticed=0",
             "pattern  client  sent", "step 4, take(3): [0, 2, 4]"]
    printed = list(shown)
    assert not shape_problems(shown, printed), "identical output must pass"
    renamed = [printed[0].replace("loop-burst", "loop-bursty")] + printed[1:]
    assert any("scenario=loop-burst " in p for p in shape_problems(shown, renamed))
    rekeyed = [printed[0].replace("lost=", "missed=")] + printed[1:]
    assert any("keys now" in p for p in shape_problems(shown, rekeyed))
    header = [printed[0], "pattern  client  sent  lost", printed[2]]
    assert any("not printed any more" in p for p in shape_problems(shown, header))
    numbers = [printed[0].replace("sent=1", "sent=99"), printed[1], "step 4, take(3): [6]"]
    assert not shape_problems(shown, numbers), "numbers may change"
    # The same on a real generated file: rename a scenario in a copy and check it.
    real = next(o for o in OUTPUTS if o.name == "ch02-other-losses")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy.txt"
        text = real.path().read_text()
        copy.write_text(text.replace("scenario=resubscribe ", "scenario=resubscribed ", 1))
        shown = copy.read_text().splitlines()[1:]
        printed = text.splitlines()[1:]
        problems = shape_problems(shown, printed)
        assert any("scenario=resubscribed" in p for p in problems), problems
    print("outputs self-test: a renamed scenario, key and header fail the check; numbers "
          "may change: ok")


def main():
    args = sys.argv[1:]
    if not args or args[0] == "list":
        for output in OUTPUTS:
            print(f"{output.path().relative_to(ROOT)}: {output.command}")
        return
    if args[0] == "regen":
        regen(set(args[1:]))
    elif args[0] == "check":
        failures = check(OUTPUTS) + [
            f"{p.relative_to(ROOT)}: no output in ci/outputs.py writes it" for p in unlisted()]
        if failures:
            print("outputs: the book shows outputs the programs no longer print:",
                  *failures, sep="\n  ", file=sys.stderr)
            sys.exit(1)
        print(f"outputs: {len(OUTPUTS)} generated outputs match what the programs print now")
    elif args[0] == "self-test":
        self_test()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
