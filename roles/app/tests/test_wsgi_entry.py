"""Tests of roles/app/files/flaskdeploy_wsgi.py, the entry point every WSGI server and
the health gate load: gunicorn's app syntax, and the proxies the app trusts (the
sample app, which has no proxy code of its own, behind it)."""

import importlib.util
import sys
from pathlib import Path

import pytest

ENTRY = Path(__file__).resolve().parents[1] / "files" / "flaskdeploy_wsgi.py"
SAMPLE_APP = Path(__file__).resolve().parents[3] / "sample_app"


@pytest.fixture
def entry(monkeypatch, tmp_path):
    """A fresh copy of the entry module, with tmp_path (where tests write apps) and the
    sample app importable, as a server's working directory makes the release."""
    monkeypatch.syspath_prepend(str(SAMPLE_APP))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SECRET_KEY", "test")
    monkeypatch.setenv("FLASKDEPLOY_WSGI_APP", "hello:create_app()")
    spec = importlib.util.spec_from_file_location("flaskdeploy_wsgi_under_test", ENTRY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    for name in [n for n in sys.modules if n.startswith("factories")]:
        del sys.modules[name]


FACTORIES = '''
def wsgi(body):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body.encode()]
    return app

application = wsgi("application")
app = wsgi("app")

def create_app(name="default", *, debug=False):
    return wsgi(f"{name} debug={debug}")

not_callable = 42
'''


def body(app, path="/", **environ):
    from werkzeug.test import Client

    return Client(app).get(path, environ_base=environ).get_data(as_text=True)


@pytest.mark.parametrize(("spec", "expected"), [
    ("factories", "application"),
    ("factories:app", "app"),
    ("factories:create_app()", "default debug=False"),
    ('factories:create_app("x")', "x debug=False"),
    ("factories:create_app('y', debug=True)", "y debug=True"),
    ("factories:create_app(name='z')", "z debug=False"),
])
def test_the_app_as_gunicorn_takes_it(entry, tmp_path, spec, expected):
    (tmp_path / "factories.py").write_text(FACTORIES)
    assert body(entry.load(spec)) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("factories:missing", "has no 'missing'"),
    ("factories:not_callable", "not a WSGI callable"),
    ("factories:create_app(__import__('os'))", "must be literals"),
    ("factories:app.attr", "neither a name nor a call"),
    ("factories:create_app(**{})", r"no \*\*arguments"),
    ("factories:create_app(", "cannot parse"),
    (":app", "no module"),
])
def test_what_is_not_an_app_is_refused_without_running_it(entry, tmp_path, spec, message):
    (tmp_path / "factories.py").write_text(FACTORIES)
    with pytest.raises(entry.AppImportError, match=message):
        entry.load(spec)


def whoami(app, headers, peer="127.0.0.1", base_url="http://127.0.0.1:8000"):
    from werkzeug.test import Client

    return Client(app).get("/whoami", headers=headers, base_url=base_url,
                           environ_base={"REMOTE_ADDR": peer}).get_json()


NGINX_HEADERS = {
    # A client spoofed X-Forwarded-For; nginx appended the real address.
    "X-Forwarded-For": "198.51.100.7, 203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "shop.example.com",
    "X-Forwarded-Port": "8443",
}


def test_no_proxy_in_front_ignores_forwarded_headers(entry):
    app = entry.make({"FLASKDEPLOY_WSGI_APP": "hello:create_app()", "FLASKDEPLOY_PROXY_HOPS": "0"})
    answer = whoami(app, NGINX_HEADERS, peer="192.0.2.1")
    assert (answer["client"], answer["scheme"], answer["host"]) == ("192.0.2.1", "http", "127.0.0.1:8000")


def test_one_proxy_gives_the_app_the_client_scheme_host_and_port(entry):
    """The sample app has no ProxyFix: the entry point's gives it what nginx saw,
    down to url_for(_external=True) on a non-standard public port."""
    app = entry.make({"FLASKDEPLOY_WSGI_APP": "hello:create_app()", "FLASKDEPLOY_PROXY_HOPS": "1"})
    answer = whoami(app, NGINX_HEADERS)
    assert answer["client"] == "203.0.113.9"  # one hop: not the spoofed address
    assert answer["scheme"] == "https"
    assert answer["url"] == "https://shop.example.com:8443/whoami"
    assert answer["server_port"] == "8000"  # the WSGI server's own, kept by ProxyFix
    standard = whoami(app, dict(NGINX_HEADERS, **{"X-Forwarded-Port": "443"}))
    assert standard["url"] == "https://shop.example.com/whoami"


def test_forwarded_headers_only_from_trusted_proxies(entry):
    app = entry.make({"FLASKDEPLOY_WSGI_APP": "hello:create_app()", "FLASKDEPLOY_PROXY_HOPS": "1",
                      "FLASKDEPLOY_TRUSTED_PROXIES": "10.0.0.0/24,192.0.2.5"})
    for balancer in ("10.0.0.17", "192.0.2.5"):
        answer = whoami(app, NGINX_HEADERS, peer=balancer)
        assert (answer["client"], answer["scheme"]) == ("203.0.113.9", "https")
    # Anyone else (a client reaching the app server directly): its own address.
    answer = whoami(app, NGINX_HEADERS, peer="10.0.1.1")
    assert (answer["client"], answer["scheme"], answer["url"]) == ("10.0.1.1", "http", "http://127.0.0.1:8000/whoami")


def test_application_is_the_app_of_the_environment(entry):
    """Made at import (uWSGI reads the module's dictionary), from the environment."""
    assert "application" in vars(entry)
    assert body(entry.application, "/version").startswith('{"release"')
