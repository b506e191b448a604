from pathlib import Path

import pytest

from confsvc.directory.model import Tree, parse_csv

DEMO = Path(__file__).resolve().parents[3] / "confsvc" / "directory" / "data" / "yenbai.csv"


@pytest.fixture(scope="session")
def tree() -> Tree:
    return Tree.build(parse_csv(DEMO.read_text(encoding="utf-8")))
