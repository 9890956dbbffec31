#!/usr/bin/env python3
"""The relay's modules and what each imports (`crate::NAME` in its non-test code), as layers.

Prints each layer, lowest first: a module's layer is one above the highest of those it
imports, so every arrow points down. Exits 1, naming the modules, if any import goes round
in a circle. Test code (files named tests*.rs, and what follows `#[cfg(test)]`) and comments
are not counted.
"""
import collections
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "relay" / "src"
IMPORT = re.compile(r"\bcrate::([a-z_]+)")


def module_of(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def code(path: pathlib.Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("#[cfg(test)]"):
            break
        if not line.lstrip().startswith("//"):
            lines.append(line)
    return "\n".join(lines)


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = collections.defaultdict(set)
    for path in sorted(SRC.rglob("*.rs")):
        if path.name.startswith("tests") or path.name in ("lib.rs", "main.rs"):
            continue
        m = module_of(path)
        edges[m]
        for dep in IMPORT.findall(code(path)):
            if dep != m:
                edges[m].add(dep)
    return edges


def circle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(edges.get(u, ())):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in state and (found := visit(v)):
                return found
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(edges):
        if u not in state and (found := visit(u)):
            return found
    return None


def main() -> int:
    edges = graph()
    if found := circle(edges):
        print("modules import each other in a circle: " + " -> ".join(found))
        return 1
    layer: dict[str, int] = {}

    def depth(u: str) -> int:
        if u not in layer:
            layer[u] = 1 + max((depth(v) for v in edges.get(u, ())), default=-1)
        return layer[u]

    for u in list(edges):
        depth(u)
    for n in range(max(layer.values()) + 1):
        print(f"{n}: " + " ".join(sorted(m for m, d in layer.items() if d == n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
