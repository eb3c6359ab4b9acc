"""The scenarios' tests (molecule/*/tests, run by molecule's testinfra verifier) find
the shared test library and fixtures here: molecule/pytest.ini makes this directory
pytest's root, so this one conftest serves every scenario."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "shared"))

from fixtures import *  # noqa: E402,F401,F403
