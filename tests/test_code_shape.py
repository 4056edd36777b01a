"""No function in ``sslinspect/`` or ``app/`` is longer than 80 lines (docstring included), outside the known
exceptions below; an exception that has been split must leave the list, so it never hides a new long function."""

from __future__ import annotations

import ast

from tests.conftest import REPO

MAX_LINES = 80

#: (file, qualified name) → why it is still long. Remove an entry once the function is split.
KNOWN_LONG: dict[tuple[str, str], str] = {}


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, int]]:
    """(qualified name, length in lines) of every function and method, nested ones included."""
    out: list[tuple[str, int]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = prefix + node.name
            out.append((name, (node.end_lineno or node.lineno) - node.lineno + 1))
            out += _functions(node, name + ".")
        elif isinstance(node, ast.ClassDef):
            out += _functions(node, prefix + node.name + ".")
        else:
            out += _functions(node, prefix)
    return out


def _long_functions() -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    for package in ("sslinspect", "app"):
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for name, lines in _functions(ast.parse(path.read_text(encoding="utf-8"), filename=rel)):
                if lines > MAX_LINES:
                    found[(rel, name)] = lines
    return found


def test_the_walk_measures_methods_and_nested_functions() -> None:
    body = "".join("        x = 1\n" for _ in range(81))
    src = "class A:\n    def f(self):\n" + body + "\ndef g():\n    def h():\n        pass\n"
    names = dict(_functions(ast.parse(src)))
    assert names["A.f"] == 82 and names["g"] == 3 and names["g.h"] == 2


def test_no_function_is_longer_than_80_lines() -> None:
    found = _long_functions()
    new = {k: v for k, v in found.items() if k not in KNOWN_LONG}
    assert not new, "split these functions (or, with a reason, list them in KNOWN_LONG): " + ", ".join(
        f"{f}::{n} ({lines} lines)" for (f, n), lines in sorted(new.items())
    )
    stale = sorted(set(KNOWN_LONG) - set(found))
    assert not stale, f"these are no longer long: remove them from KNOWN_LONG: {stale}"
