import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hello import create_app  # noqa: E402


@pytest.fixture
def make_app():
    def _make(**config):
        return create_app({"TESTING": True, "SECRET_KEY": "test", **config})

    return _make


@pytest.fixture
def client(make_app):
    return make_app().test_client()
