#!/usr/bin/env python3
"""What a crates.io user meets, checked (scripts/test.sh runs this):

- README.md has at most 250 lines, and every relative link or image in it
  names a file in the repository (crates.io resolves them against the
  `repository` URL);
- user-facing docs (README, ARCHITECTURE, CHANGELOG, the guides, doc comments
  of the published crates) cite no internal issue numbers (`#12`, `issue 12`)
  or guide section numbers (`guide 7.3`);
- `cargo tree -e normal` of `layercache` with default features lists one syn;
- `cargo run --example quickstart` compiles fewer than 70 packages: counted
  from cargo's unit graph (nightly `--unit-graph`, nothing is built), which
  resolves features exactly as the real command does.
"""
import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
README_MAX_LINES = 250
QUICKSTART_MAX_PACKAGES = 70
FAILURES = []


def fail(message):
    FAILURES.append(message)


def run(*args):
    return subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True).stdout


def check_readme():
    text = (ROOT / "README.md").read_text()
    lines = text.count("\n")
    if lines > README_MAX_LINES:
        fail(f"README.md has {lines} lines (at most {README_MAX_LINES})")
    tracked = set(run("git", "ls-files").split("\n"))
    text_without_code = re.sub(r"```.*?```", "", text, flags=re.S)
    targets = re.findall(r"\]\(([^)\s]+)\)", text_without_code)
    targets += re.findall(r"^\[[^\]]+\]:\s*(\S+)", text_without_code, flags=re.M)
    relative = [t for t in targets if not re.match(r"^(https?:|mailto:|#)", t)]
    for target in relative:
        path = target.split("#")[0]
        if path not in tracked:
            fail(f"README.md links to {target}, which is not a file of the repository")
    print(f"check: README.md {lines} lines, {len(relative)} relative links checked")


CITATIONS = [
    (re.compile(r"(?<![\w&/])#\d+\b"), "an issue number"),
    (re.compile(r"\bissues? #?\d+\b", re.I), "an issue number"),
    (re.compile(r"\bguide(?:'s)? \d+\.\d+", re.I), "a guide section number"),
]


def check_citations():
    files = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "CHANGELOG.md"]
    files += sorted((ROOT / "src" / "guide").glob("*.md"))
    docs = [p for crate in ("src", "cache-runtime/src", "cache-macros/src")
            for p in sorted((ROOT / crate).rglob("*.rs"))]
    checked = 0
    for path in files + docs:
        for number, line in enumerate(path.read_text().split("\n"), 1):
            if path.suffix == ".rs" and not re.match(r"\s*//[/!]", line):
                continue
            checked += 1
            for pattern, what in CITATIONS:
                if pattern.search(line):
                    fail(f"{path.relative_to(ROOT)}:{number} cites {what}: {line.strip()}")
    print(f"check: {checked} lines of user-facing docs cite no issue or guide section numbers")


def check_one_syn():
    tree = run("cargo", "tree", "-e", "normal", "-p", "layercache", "--prefix", "none")
    syns = sorted({line.split()[1] for line in tree.split("\n") if line.startswith("syn ")})
    if len(syns) != 1:
        fail(f"cargo tree -e normal -p layercache lists syn {', '.join(syns)}: one expected")
    print(f"check: default features compile syn {', '.join(syns)}")


def check_quickstart():
    graph = json.loads(run("cargo", "+nightly", "build", "--example", "quickstart",
                           "-Z", "unstable-options", "--unit-graph"))
    packages = {unit["pkg_id"] for unit in graph["units"]}
    if len(packages) >= QUICKSTART_MAX_PACKAGES:
        fail(f"cargo run --example quickstart compiles {len(packages)} packages "
             f"(fewer than {QUICKSTART_MAX_PACKAGES} expected)")
    print(f"check: cargo run --example quickstart compiles {len(packages)} packages")


def main():
    check_readme()
    check_citations()
    check_one_syn()
    check_quickstart()
    for message in FAILURES:
        print(f"check: {message}", file=sys.stderr)
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
