"""DESIGN §3: attendance never imports media, http or signaling."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "confsvc" / "attendance"
FORBIDDEN = ("confsvc.media", "confsvc.http", "confsvc.signaling", "confsvc.scheduling", "aiohttp", "aiortc")


def test_attendance_imports_only_what_it_may():
    for f in PKG.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert not n.startswith(FORBIDDEN), f"{f.name} imports {n}"
