"""Suite-wide pytest options.

``--rewrite``: regenerate the expected outputs of transcript tests (``testdata/*.txt``,
see tests/transcript/datadriven.py) in place, for review with ``git diff``.  The same
as setting CONSENSUSKIT_REWRITE=1.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="regenerate transcript expectations (testdata/*.txt) in place",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--rewrite"):
        from tests.transcript.datadriven import REWRITE_ENV

        os.environ[REWRITE_ENV] = "1"
