#!/usr/bin/env python3
"""Import circles between the modules of a crate: fails on any circle not listed as known.

    scripts/check-import-cycles.py            # every crate of the workspace
    scripts/check-import-cycles.py --print    # the module graph's circles, known or not

A module is a child of `src/` (`src/engine.rs` and `src/engine/**` are `engine`) or, one level down,
of a directory module (`kube/applier`, `namespace_mapping/run`): circles are looked for among the
children of each module. An edge A -> B is any reference `crate::B` (`use crate::B…`, `crate::B::x`)
in A's files, or `super::B` from A's own file; `#[cfg(test)]` modules and tests are skipped (they may
reach anywhere). KNOWN lists the edges of the circles that exist today, to be removed (issue 23): a
circle passes only while each of its edges is known; a new edge inside a circle, or a new circle, fails
with the edges that close it. `--known` prints today's edges in KNOWN's form.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATES = ["dr-syncer-core", "dr-syncer-operator", "dr-syncer-cli", "dr-syncer-agent", "dr-syncer-testenv"]

# Edges of circles tolerated for now, (crate, parent module) -> "a -> b": none (issue 23 removed the last).
KNOWN: dict[tuple[str, str], set[str]] = {}

USE_CRATE = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
USE_BLOCK = re.compile(r"\buse\s+crate::\{([^;]*)\};", re.S)
SUPER = re.compile(r"\bsuper::([a-z_][a-z0-9_]*)")


COMMENT = re.compile(r"^\s*//.*$", re.M)


def strip_tests(text: str) -> str:
    """The file without comments (doc links are not imports), `#[cfg(test)] mod … { … }` blocks and
    `#[cfg(test)] mod x;` lines."""
    text = COMMENT.sub("", text)
    out, i = [], 0
    while True:
        j = text.find("#[cfg(test)]", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        k = j + len("#[cfg(test)]")
        rest = text[k:].lstrip()
        if rest.startswith("mod ") or rest.startswith("pub(crate) mod ") or rest.startswith("pub mod "):
            brace, semi = rest.find("{"), rest.find(";")
            if semi >= 0 and (brace < 0 or semi < brace):
                i = k + (len(text[k:]) - len(rest)) + semi + 1
                continue
            depth, p = 0, brace
            while p < len(rest):
                if rest[p] == "{":
                    depth += 1
                elif rest[p] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                p += 1
            i = k + (len(text[k:]) - len(rest)) + p + 1
        else:
            i = k
    return "".join(out)


def module_files(src: Path) -> dict[str, list[Path]]:
    """Top-level module -> its files (lib.rs/main.rs are the crate root, left out)."""
    mods: dict[str, list[Path]] = {}
    for f in sorted(src.rglob("*.rs")):
        rel = f.relative_to(src)
        if rel.parts[0] in ("lib.rs", "main.rs") or rel.parts[0] == "bin":
            continue
        name = rel.parts[0][:-3] if len(rel.parts) == 1 else rel.parts[0]
        if name.endswith("tests") or rel.name == "tests.rs" or rel.stem.endswith("_tests"):
            continue
        mods.setdefault(name, []).append(f)
    return mods


def edges_top(src: Path) -> dict[str, set[str]]:
    mods = module_files(src)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, files in mods.items():
        for f in files:
            text = strip_tests(f.read_text(encoding="utf-8"))
            targets = set(USE_CRATE.findall(text))
            for block in USE_BLOCK.findall(text):
                targets.update(re.findall(r"(?:^|[\s,{])([a-z_][a-z0-9_]*)\s*(?:::|,|\}|$)", block))
            graph[m].update(t for t in targets if t in mods and t != m)
    return graph


def edges_children(src: Path, parent: str) -> dict[str, set[str]]:
    """Children of directory module `parent`: `parent/x.rs` and `parent/x/**` are `x`."""
    base = src / parent
    if not base.is_dir():
        return {}
    mods: dict[str, list[Path]] = {}
    for f in sorted(base.rglob("*.rs")):
        rel = f.relative_to(base)
        name = rel.parts[0][:-3] if len(rel.parts) == 1 else rel.parts[0]
        if name in ("tests", "mod") or rel.name == "tests.rs" or rel.stem.endswith("_tests"):
            continue
        mods.setdefault(name, []).append(f)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, files in mods.items():
        for f in files:
            text = strip_tests(f.read_text(encoding="utf-8"))
            # `parent/x.rs` reaches its siblings through `super::`, `parent/x/y.rs` through `super::super::`.
            depth = len(f.relative_to(base).parts)
            refs = names_after(text, "super::" * depth) | names_after(text, f"crate::{parent}::")
            graph[m].update(t for t in refs if t in mods and t != m)
    return graph


def names_after(text: str, prefix: str) -> set[str]:
    """The modules named right after `prefix`: `prefix::a`, and each item of `prefix::{a, b::c, …}`."""
    names = set(re.findall(r"(?<![a-z_:])" + re.escape(prefix) + r"([a-z_][a-z0-9_]*)", text))
    for m in re.finditer(r"(?<![a-z_:])" + re.escape(prefix) + r"\{", text):
        depth, p, item = 1, m.end(), ""
        while p < len(text) and depth:
            c = text[p]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            if depth == 1 and c == ",":
                item = ""
            elif depth == 1 or (depth == 2 and c == "{"):
                item += c
                if re.fullmatch(r"\s*[a-z_][a-z0-9_]*(::|\{)", item):
                    names.add(item.strip().rstrip(":{"))
            elif depth == 0:
                break
            p += 1
        # Items named without a path (`super::{a, b}`).
        block = text[m.end() : p]
        flat = re.sub(r"\{[^{}]*\}", "", re.sub(r"\{[^{}]*\}", "", block))
        names.update(t.strip() for t in flat.split(",") if re.fullmatch(r"\s*[a-z_][a-z0-9_]*\s*", t))
    return names


def sccs(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main(argv: list[str]) -> int:
    show, dump = "--print" in argv, "--known" in argv
    failed = False
    found: dict[tuple[str, str], list[str]] = {}
    for crate in CRATES:
        src = ROOT / crate / "src"
        if not src.is_dir():
            continue
        graphs = {"": edges_top(src)}
        for d in sorted(p.name for p in src.iterdir() if p.is_dir()):
            graphs[d] = edges_children(src, d)
        for parent, graph in graphs.items():
            for comp in sccs(graph):
                inner = sorted(f"{a} -> {b}" for a in comp for b in graph[a] if b in comp)
                found.setdefault((crate, parent), []).extend(inner)
                new_edges = [e for e in inner if e not in KNOWN.get((crate, parent), set())]
                where = f"{crate}/src" + (f"/{parent}" if parent else "")
                if (show or new_edges) and not dump:
                    print(f"import circle in {where}: {{{', '.join(sorted(comp))}}}")
                    for e in inner:
                        print(f"    {e}{'   <- new' if e in new_edges else ''}")
                failed = failed or bool(new_edges)
    if dump:
        print("KNOWN: dict[tuple[str, str], set[str]] = {")
        for key, edges in sorted(found.items()):
            print(f"    {key!r}: {{")
            for e in sorted(edges):
                print(f"        {e!r},")
            print("    },")
        print("}")
        return 0
    if failed:
        print("check-import-cycles: new import circles or edges in one (see above): break them instead")
        return 1
    known = sum(len(v) for v in KNOWN.values())
    print(f"check-import-cycles: no new import circles ({known} known edges in circles left to remove)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
