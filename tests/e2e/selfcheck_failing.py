"""Not collected by a plain run (no test_ prefix): test_harness.py runs it as a child pytest to
check that a failing e2e test keeps its screenshot and leaves no namespace or process behind."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_fails_with_a_page_open(node, site_browser, new_page) -> None:
    page = new_page(site_browser("commune", 320, 180))
    page.goto(node.url("/login"))
    page.evaluate("console.log('hello from the page')")
    raise AssertionError("this test fails on purpose")
