#!/usr/bin/env python3
"""Per-request instruction counts by function, from the two runs of bench/callgrind-process.sh.

For humans, NOT run by CI. bench/callgrind-process.sh runs the same process twice, with N1 and
N2 requests, so that start-up and shutdown cancel: (Ir(N2) - Ir(N1)) / (N2 - N1). This does the
same per function, and compares two such tables (where does the sidecar's work go,
and what did a change move).

    bench/callgrind-functions.py table DIR N1 N2 > A.tsv
        exclusive instructions per request of each function ("count<TAB>file:function")
    bench/callgrind-functions.py diff A.tsv B.tsv [ROWS]
        the functions whose count differs most between two tables, largest first
    bench/callgrind-functions.py callers DIR N1 N2 FUNCTION
        per request, the calls into FUNCTION (a substring of its name) by caller: e.g.
        `__memcpy_avx_unaligned_erms` to see whose copies they are

DIR holds callgrind.N1 and callgrind.N2, as bench/callgrind-process.sh leaves them. Needs
callgrind_annotate (valgrind) and Python 3's standard library.
"""

import re
import subprocess
import sys

COUNT = r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?"


def annotate(path, *options):
    """The lines of `callgrind_annotate` on `path`."""
    run = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--threshold=100", *options, path],
        capture_output=True,
        text=True,
        check=True,
    )
    return run.stdout.splitlines()


def functions(path):
    """Exclusive instructions of each function in one callgrind file."""
    counts = {}
    for line in annotate(path):
        m = re.match(COUNT + r"(\S.*)$", line)
        if m and ":" in m.group(2):
            name = m.group(2).strip()
            counts[name] = counts.get(name, 0) + int(m.group(1).replace(",", ""))
    return counts


def callers(path, target):
    """Inclusive instructions of the calls into functions whose name holds `target`, by caller."""
    counts, block = {}, []
    for line in annotate(path, "--tree=caller"):
        if re.match(COUNT + r"<\s", line):
            block.append(line)
            continue
        if "*  " in line and target in line:
            for b in block:
                m = re.match(COUNT + r"<\s+(.*)$", b)
                if m:
                    # The call count "(1,201x)" differs between the runs: not part of the key.
                    name = re.sub(r"\s*\([\d,]+x\)$", "", m.group(2).split(" [")[0]).strip()
                    counts[name] = counts.get(name, 0) + int(m.group(1).replace(",", ""))
        block = []
    return counts


def per_request(load, directory, n1, n2):
    """`load` of both runs, as the difference per request."""
    n1, n2 = int(n1), int(n2)
    a, b = load(f"{directory}/callgrind.{n1}"), load(f"{directory}/callgrind.{n2}")
    return {k: (b.get(k, 0) - a.get(k, 0)) / (n2 - n1) for k in set(a) | set(b)}


def short(name):
    """A function's name without its file and binary, for comparing two tables."""
    return (name.split(":", 1)[1] if ":" in name else name).split(" [")[0].strip()


def read_table(path):
    table = {}
    with open(path) as f:
        for line in f:
            value, name = line.rstrip("\n").split("\t", 1)
            table[short(name)] = table.get(short(name), 0) + float(value)
    return table


def main(argv):
    if len(argv) >= 5 and argv[1] == "table":
        rows = per_request(functions, *argv[2:5])
        for name, v in sorted(rows.items(), key=lambda kv: -kv[1]):
            if abs(v) >= 1:
                print(f"{v:.0f}\t{name}")
    elif len(argv) >= 4 and argv[1] == "diff":
        a, b = read_table(argv[2]), read_table(argv[3])
        limit = int(argv[4]) if len(argv) > 4 else 60
        rows = sorted(
            ((b.get(k, 0) - a.get(k, 0), a.get(k, 0), b.get(k, 0), k) for k in set(a) | set(b)),
            key=lambda r: -abs(r[0]),
        )
        print(f"total difference {sum(r[0] for r in rows):+.0f} instructions per request")
        for d, x, y, k in rows[:limit]:
            print(f"{d:+7.0f} {x:7.0f} {y:7.0f}  {k[:150]}")
    elif len(argv) >= 6 and argv[1] == "callers":
        rows = per_request(lambda p: callers(p, argv[5]), *argv[2:5])
        for name, v in sorted(rows.items(), key=lambda kv: -kv[1]):
            if abs(v) >= 5:
                print(f"{v:7.0f}  {name[-170:]}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
