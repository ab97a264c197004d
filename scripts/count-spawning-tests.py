#!/usr/bin/env python3
"""Counts the Swift test functions that start a process: a `@Test` whose body, or a helper it calls
(followed through helpers of helpers), starts a `GPSProcess`, calls `GPSProcess.run` or makes a
`Process()`. A heuristic over the source text (names too common to follow are skipped), good for
comparing two trees measured alike. Usage: count-spawning-tests.py [ROOT] (ROOT holds Tests/)."""
import glob
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "."
SPAWN = re.compile(r'GPSProcess(\.run)?\(|\bProcess\(\)|\.startServer\(')
# Helper names too common to follow by name alone.
GENERIC = {"run", "state", "history", "scheduler", "worker", "record", "reset", "increment", "skip", "tamper", "as_",
           "deploymentRow", "runEvents"}


def body_at(text, index):
    """The braced body that starts after `index`, skipping string literals."""
    start = text.index("{", index)
    depth = 0
    k = start
    while k < len(text):
        c = text[k]
        if c == '"':
            if text.startswith('"""', k):
                k = text.index('"""', k + 3) + 3
                continue
            k += 1
            while text[k] != '"':
                if text[k] == "\\":
                    k += 1
                k += 1
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:k + 1]
        k += 1
    return text[start:]


functions = {}  # name -> [(body, is a test, file)]
for path in glob.glob(root + "/Tests/**/*.swift", recursive=True):
    text = open(path).read()
    for match in re.finditer(r"func (\w+)", text):
        try:
            body = body_at(text, match.end())
        except (ValueError, IndexError):
            continue
        before = re.split(r"[}{]", text[max(0, match.start() - 400):match.start()])[-1]
        functions.setdefault(match.group(1), []).append((body, "@Test" in before, path))


def followed(name):
    return name not in GENERIC and not any(is_test for _, is_test, _ in functions[name])


spawning = {name for name, found in functions.items() if any(SPAWN.search(body) for body, _, _ in found)}
changed = True
while changed:
    changed = False
    for name, found in functions.items():
        if name in spawning:
            continue
        helpers = [helper for helper in spawning if followed(helper)]
        if any(re.search(r"(?<![\w])" + helper + r"\s*[\(\{]", body) for body, _, _ in found for helper in helpers):
            spawning.add(name)
            changed = True

tests = 0
per_file = {}
for name, found in functions.items():
    for _, is_test, path in found:
        if not is_test:
            continue
        tests += 1
        if name in spawning:
            per_file[os.path.basename(path)] = per_file.get(os.path.basename(path), 0) + 1
print(f"{sum(per_file.values())} of {tests} test functions start a process")
print(" ".join(f"{name}:{count}" for name, count in sorted(per_file.items())))
