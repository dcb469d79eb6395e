"""CI guard: only one named module of the package may import Dagster internals (``dagster._*``).

Everything else uses Dagster's public API, so an upgrade breaks in one known place.
Exit 1 listing each offending import as ``path:line: module``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "billing_pipeline"
ALLOWED = PACKAGE / "defs" / "dagster_internals.py"


def internal_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [(node.lineno, n) for n in names if n.startswith("dagster._")]
    return found


def main() -> int:
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != ALLOWED
        for line, name in internal_imports(path)
    ]
    if bad:
        print(f"dagster internals imported outside {ALLOWED.relative_to(PACKAGE.parent)}:", *bad, sep="\n  ")
        return 1
    print(f"dagster internals: only in {ALLOWED.relative_to(PACKAGE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
