"""Not collected by a plain run (no test_ prefix): test_harness.py runs it as a child pytest and
SIGKILLs it mid-test, to check that the namespace's watchdog leaves nothing behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_is_killed_with_a_node_and_a_page_up(node, site_browser, new_page) -> None:
    page = new_page(site_browser("district", 320, 180))
    page.goto(node.url("/login"))
    Path(os.environ["E2E_READY_FILE"]).write_text("ready")
    time.sleep(120)
