#!/usr/bin/env python3
"""The MSRV check, without another toolchain.

Fails when a locked dependency that a user of a published crate compiles
(normal and build dependencies, every feature enabled, every platform)
declares a `rust-version` above the crate's own. `--all-features` covers every
feature set: features only add dependencies. Dev-dependencies are left out:
users never build them, and the test suite runs on the toolchain CI has.

    python3 scripts/msrv.py          # in scripts/test.sh
"""
import json
import subprocess
import sys


def version(text):
    return tuple(int(part) for part in text.split(".")) + (0,) * (3 - text.count(".") - 1)


def main():
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked"],
        check=True, capture_output=True, text=True).stdout)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    members = [packages[i] for i in meta["workspace_members"]]
    # A crate with `publish = false` (benchmarks, UI tests) is never a user's dependency.
    published = [p for p in members if p.get("publish") != []]
    failures = []
    for crate in published:
        msrv = crate.get("rust_version")
        if not msrv:
            failures.append(f"{crate['name']} declares no rust-version")
            continue
        seen, stack = set(), [crate["id"]]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            for dep in nodes[current]["deps"]:
                if any(kind["kind"] in (None, "build") for kind in dep["dep_kinds"]):
                    stack.append(dep["pkg"])
        for dep_id in seen - {crate["id"]}:
            dep = packages[dep_id]
            needed = dep.get("rust_version")
            if needed and version(needed) > version(msrv):
                failures.append(f"{crate['name']} (rust-version {msrv}) depends on "
                                f"{dep['name']} {dep['version']}, which needs Rust {needed}")
        print(f"msrv: {crate['name']} {msrv}: {len(seen) - 1} locked dependencies checked")
    for line in sorted(set(failures)):
        print(f"msrv: {line}", file=sys.stderr)
    if failures:
        print("msrv: lower the dependency (cargo update -p NAME --precise VERSION) "
              "or raise workspace.package.rust-version", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
