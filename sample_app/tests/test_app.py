import pytest

from hello import __version__, create_app


def test_index_links_static_css(client):
    resp = client.get("/")
    assert resp.status_code == 200
    assert b"Hello from Flask" in resp.data
    assert b'href="/static/style.css"' in resp.data


def test_static_css_exists(client):
    resp = client.get("/static/style.css")
    assert resp.status_code == 200
    assert resp.mimetype == "text/css"


def test_healthz_reports_version(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok", "version": __version__, "release": None}


def test_release_from_revision_file(monkeypatch, tmp_path, make_app):
    (tmp_path / "REVISION").write_text("0123abcd4567 path /src/hello\n")
    monkeypatch.chdir(tmp_path)
    body = make_app().test_client().get("/version").get_json()
    assert body == {"version": __version__, "release": "0123abcd4567"}


def test_version_from_environment(monkeypatch):
    monkeypatch.setenv("APP_VERSION", "2.5.0")
    app = create_app({"TESTING": True, "SECRET_KEY": "x"})
    assert app.test_client().get("/version").get_json() == {"version": "2.5.0", "release": None}


def test_whoami_without_proxy_ignores_forwarded_headers(client):
    resp = client.get(
        "/whoami",
        headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
        environ_base={"REMOTE_ADDR": "192.0.2.1"},
    )
    body = resp.get_json()
    assert body["client"] == "192.0.2.1"
    assert body["scheme"] == "http"
    assert body["hostname"]


def test_whoami_behind_one_proxy_trusts_one_hop(make_app):
    client = make_app(PROXY_FIX_COUNT=1).test_client()
    # A client spoofs X-Forwarded-For; nginx appends the real address.
    resp = client.get(
        "/whoami",
        headers={
            "X-Forwarded-For": "198.51.100.7, 203.0.113.9",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "example.org",
        },
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    body = resp.get_json()
    assert body["client"] == "203.0.113.9"
    assert body["scheme"] == "https"
    assert body["host"] == "example.org"


def test_whoami_reports_the_servers_own_port_not_the_forwarded_one(make_app):
    client = make_app(PROXY_FIX_COUNT=1).test_client()
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Port": "443"}
    body = client.get("/whoami", headers=headers, base_url="http://10.0.0.5:8001",
                      environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_json()
    assert body["server_port"] == "8001"
    assert body["client"] == "203.0.113.9"
    direct = make_app().test_client().get("/whoami", base_url="http://10.0.0.5:8000").get_json()
    assert direct["server_port"] == "8000"


def test_proxy_count_from_environment(monkeypatch):
    monkeypatch.setenv("PROXY_FIX_COUNT", "1")
    app = create_app({"TESTING": True, "SECRET_KEY": "x"})
    resp = app.test_client().get(
        "/whoami", headers={"X-Forwarded-For": "203.0.113.9"}
    )
    assert resp.get_json()["client"] == "203.0.113.9"


def test_echo_counts_body(client):
    resp = client.post("/echo", data=b"x" * 1000)
    assert resp.get_json() == {"length": 1000}


def test_missing_secret_key_refuses_to_start(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app()


def test_forwarded_headers_only_from_trusted_proxies(make_app):
    client = make_app(PROXY_FIX_COUNT=1, TRUSTED_PROXIES=["10.0.0.0/24", "192.0.2.5"]).test_client()
    spoofed = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    # From the balancer: the forwarded client address and scheme.
    for balancer in ("10.0.0.17", "192.0.2.5"):
        body = client.get("/whoami", headers=spoofed, environ_base={"REMOTE_ADDR": balancer}).get_json()
        assert (body["client"], body["scheme"]) == ("203.0.113.9", "https")
    # From anyone else (a client reaching the app directly): its own address.
    body = client.get("/whoami", headers=spoofed, environ_base={"REMOTE_ADDR": "10.0.1.1"}).get_json()
    assert (body["client"], body["scheme"]) == ("10.0.1.1", "http")
