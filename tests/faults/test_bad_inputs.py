"""The rows of BAD_INPUTS.md that no other test checks: each bad input, run as a real
`avatar-studio` process, gives its exit code and one plain line (no traceback)."""
from __future__ import annotations

import pytest

from tests.faults.bad_inputs import BAD, CASES, message, run_case

OWN = [c for c in CASES if c.test == BAD and c.argv is not None]


@pytest.mark.parametrize("case", OWN, ids=[c.what[:40] for c in OWN])
def test_bad_input(case, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    r, _ = run_case(case, d)
    assert r.returncode == case.code, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    line = message(r)
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and errors[0] == line, r.stderr
    assert line.startswith(("error:", "avatar-studio: error:")) and case.expect in line, line


def test_the_table_has_twenty_rows_each_with_a_test():
    assert len(CASES) >= 20
    assert all(c.test.startswith("tests/") and "::" in c.test for c in CASES)
