"""Not collected by the suite (no test_ prefix): tests/process/test_ci_strictness.py runs
this file alone, in a pytest of its own, to see what CI makes of a skip."""

import pytest


def test_a_test_that_skips() -> None:
    pytest.skip("a probe that always skips")
