#!/usr/bin/env python3
"""Checks the runtime's module layering and file sizes.

Usage: check_layers.py [--src cache-runtime/src] [--limit 700]

(a) Builds the import graph between the top-level modules of the runtime
    crate (a module is `foo.rs` together with `foo/`), from `crate::foo`
    paths and `use crate::{foo, ..}` groups in non-test code (comments, doc
    comments, string contents and `#[cfg(test)]` items left out; a
    `crate::Name` re-exported by lib.rs counts as its module). Prints it,
    fails on a cycle (printing it) and on an import of a higher layer than
    the importer's (LAYERS below); a module missing from LAYERS fails too,
    so a new module gets its place in the table.
(b) Counts the lines of code of every file (tests, comments and blank lines
    aside) and fails when one is over the limit.

Exits 1 when any check fails. Standard library only.
"""

import argparse
import os
import re
import sys

# The declared layers, lowest first: a module may import modules of its own
# layer or of lower ones (DESIGN.md, "Where each thing lives").
LAYERS = [
    ("value types, clock, key, codec", ["value", "error", "clock", "key", "codec"]),
    ("config", ["config"]),
    ("metrics", ["metrics"]),
    ("stores", ["local", "flight", "shared"]),
    ("runtime", ["runtime"]),
    ("pipeline", ["pipeline"]),
    ("what users call", ["invalidate", "manual", "warm", "export", "web"]),
]
LAYER_OF = {m: i for i, (_, mods) in enumerate(LAYERS) for m in mods}

# Public paths kept where users found them in earlier versions: a `pub use`
# of a higher layer's item is an alias of the path, not code that depends on
# it. Each is listed here, with the file that holds it, so none slips in
# unnoticed.
PATH_ALIASES = {
    ("shared/mod.rs", "pub use crate::runtime::tier;"),
}
ROOT = "lib"


def blank_out(text):
    """`text` with comments replaced by spaces and string/char literal
    contents by `x`, newlines kept (so line numbers and line counts hold)."""
    out = []
    i, n = 0, len(text)

    def keep_lines(chunk, fill):
        return "".join(c if c == "\n" else fill for c in chunk)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(keep_lines(text[i:j], " "))
            i = j
        elif (m := re.compile(r'b?r(#*)"').match(text, i)) and (
            i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            close = '"' + m.group(1)
            end = text.find(close, m.end())
            end = n if end < 0 else end
            out.append(text[i : m.end()] + keep_lines(text[m.end() : end], "x") + close)
            i = end + len(close)
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('"' + keep_lines(text[i + 1 : j], "x") + '"')
            i = j + 1
        elif c == "'" and (m := re.compile(r"'(\\.[^']*|[^\\'\n])'").match(text, i)):
            out.append("'x'")
            i = m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


CFG_TEST = re.compile(r"#\[cfg\(test\)\]")


def strip_test_items(code):
    """`code` with every `#[cfg(test)]` item blanked (newlines kept), and the
    names of `#[cfg(test)] mod name;` declarations (test-only files)."""
    test_mods = []
    out, pos = [], 0
    for m in CFG_TEST.finditer(code):
        if m.start() < pos:
            continue
        j = m.end()
        # Further attributes, then the item up to its `;` or its `{ .. }` body.
        while True:
            attr = re.compile(r"\s*#\[[^\]]*\]").match(code, j)
            if not attr:
                break
            j = attr.end()
        decl = re.compile(r"\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;").match(code, j)
        if decl:
            test_mods.append(decl.group(1))
        semi, brace = code.find(";", j), code.find("{", j)
        if brace < 0 or (0 <= semi < brace):
            end = semi + 1
        else:
            depth, end = 0, brace
            while end < len(code):
                if code[end] == "{":
                    depth += 1
                elif code[end] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                end += 1
            end += 1
        out.append(code[pos : m.start()])
        out.append("".join(c if c == "\n" else " " for c in code[m.start() : end]))
        pos = end
    out.append(code[pos:])
    return "".join(out), test_mods


def top_level_module(rel):
    """`shared/redis.rs` -> `shared`; `config.rs` -> `config`; `lib.rs` -> lib."""
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def split_group(group):
    """First path segment of each item of a `{a::b, c, d::{e, f}}` group body."""
    items, depth, cur = [], 0, ""
    for c in group:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if c == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += c
    items.append(cur)
    firsts = []
    for item in items:
        m = re.match(r"\s*(\w+)", item)
        if m:
            firsts.append(m.group(1))
    return firsts


def group_body(code, start):
    """The text inside the braces opening at `start` (code[start] == '{')."""
    depth = 0
    for j in range(start, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return code[start + 1 : j]
    return code[start + 1 :]


def root_reexports(lib_code, modules):
    """Names lib.rs re-exports from a module (`pub use config::{Config, ..}`)."""
    names = {}
    for m in re.finditer(r"\bpub\s+use\s+(\w+)::", lib_code):
        module = m.group(1)
        if module not in modules:
            continue
        rest = lib_code[m.end() :]
        if rest.startswith("{"):
            body = group_body(rest, 0)
            for item in body.split(","):
                parts = item.split()
                if parts:
                    names[parts[-1]] = module  # `X` or `X as Y`
        else:
            item = re.match(r"(\w+)(?:\s+as\s+(\w+))?", rest)
            if item:
                names[item.group(2) or item.group(1)] = module
    return names


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", default="cache-runtime/src")
    parser.add_argument("--limit", type=int, default=700)
    args = parser.parse_args()
    src = args.src

    files = {}
    for dirpath, _, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8") as f:
                    files[os.path.relpath(path, src)] = blank_out(f.read())
    test_files = set()
    for rel, code in list(files.items()):
        files[rel], test_mods = strip_test_items(code)
        stem = rel[:-3]
        base = os.path.dirname(rel) if os.path.basename(rel) in ("mod.rs", "lib.rs") else stem
        for name in test_mods:
            for candidate in (os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")):
                test_files.add(os.path.normpath(candidate))

    modules = sorted({top_level_module(r) for r in files} - {ROOT, "main"})
    reexports = root_reexports(files.get("lib.rs", ""), set(modules))
    failed = False

    # (a) the import graph.
    edges = {m: {} for m in modules}  # importer -> {imported: "file:line"}
    unresolved = {}
    ref = re.compile(r"(?<![\w$])\$?crate\s*::\s*(\{|\w+)")
    for rel, code in sorted(files.items()):
        importer = top_level_module(rel)
        if importer == ROOT or rel in test_files:
            continue
        for rel_alias, alias in PATH_ALIASES:
            if rel == rel_alias:
                code = code.replace(alias, " " * len(alias))
        for m in ref.finditer(code):
            line = code.count("\n", 0, m.start()) + 1
            where = f"{rel}:{line}"
            if m.group(1) == "{":
                firsts = split_group(group_body(code, m.start(1)))
            else:
                firsts = [m.group(1)]
            for name in firsts:
                target = name if name in modules else reexports.get(name)
                if target is None:
                    unresolved.setdefault(name, where)
                elif target != importer:
                    edges[importer].setdefault(target, where)

    print(f"import graph of the top-level modules of {src} (non-test code):")
    width = max(len(m) for m in modules)
    for m in modules:
        targets = ", ".join(sorted(edges[m])) or "-"
        print(f"  {m:<{width}} -> {targets}")
    if unresolved:
        print("  (not a module: " + ", ".join(f"crate::{n} at {w}" for n, w in sorted(unresolved.items())) + ")")

    cycles = find_cycles(modules, edges)
    if cycles:
        failed = True
        print(f"\nFAIL: {len(cycles)} group(s) of modules that import each other in a cycle:")
        for cycle, comp in cycles:
            print(f"  {', '.join(sorted(comp))}; the shortest cycle through {cycle[0]}:")
            print("    " + " -> ".join(cycle))
            for a, b in zip(cycle, cycle[1:]):
                print(f"      {a} -> {b} at {edges[a][b]}")
    else:
        print("\nok: no import cycle")

    unknown = [m for m in modules if m not in LAYER_OF]
    if unknown:
        failed = True
        print(f"FAIL: not in the layer table (scripts/check_layers.py LAYERS): {', '.join(unknown)}")
    upward = [
        (a, b, where)
        for a in modules
        for b, where in sorted(edges[a].items())
        if a in LAYER_OF and b in LAYER_OF and LAYER_OF[b] > LAYER_OF[a]
    ]
    order = " -> ".join(name for name, _ in LAYERS)
    if upward:
        failed = True
        print(f"FAIL: {len(upward)} import(s) of a higher layer (layers, lowest first: {order}):")
        for a, b, where in upward:
            print(f"  {a} -> {b} at {where} ({LAYERS[LAYER_OF[a]][0]} -> {LAYERS[LAYER_OF[b]][0]})")
    else:
        print(f"ok: every import goes to the same or a lower layer ({order})")

    # (b) lines of code per file.
    counts = sorted(
        ((sum(1 for line in code.splitlines() if line.strip()), rel)
         for rel, code in files.items() if rel not in test_files),
        reverse=True,
    )
    over = [(n, rel) for n, rel in counts if n > args.limit]
    print(f"\nlines of code per file (tests, comments and blank lines aside), limit {args.limit}:")
    for n, rel in counts[: len(over) + 3]:
        mark = "  OVER" if n > args.limit else ""
        print(f"  {rel:<32} {n:>5}{mark}")
    print(f"  ({len(counts)} files, {sum(n for n, _ in counts)} lines of code)")
    if over:
        failed = True
        print(f"FAIL: {len(over)} file(s) over {args.limit} lines of code")
    else:
        print(f"ok: no file over {args.limit} lines of code")
    return 1 if failed else 0


def find_cycles(modules, edges):
    """(cycle, component) for each strongly connected component of more than
    one module (Tarjan); the cycle is a closed path, the shortest through the
    component's first module."""
    index, low, stack, on_stack, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(set(comp))

    for v in modules:
        if v not in index:
            visit(v)
    cycles = []
    for comp in comps:
        start = min(comp)
        # Breadth-first, so the cycle printed is the shortest one.
        paths, seen = [[start]], {start}
        found = None
        while paths and not found:
            nxt = []
            for path in paths:
                for w in sorted(edges[path[-1]]):
                    if w == start:
                        found = path + [start]
                        break
                    if w in comp and w not in seen:
                        seen.add(w)
                        nxt.append(path + [w])
                if found:
                    break
            paths = nxt
        cycles.append((found, comp))
    return cycles


if __name__ == "__main__":
    sys.exit(main())
