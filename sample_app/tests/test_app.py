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
    assert body["url"] == "http://localhost/whoami"
    assert body["server_port"] == "80"
    assert body["hostname"]


def test_echo_counts_body(client):
    resp = client.post("/echo", data=b"x" * 1000)
    assert resp.get_json() == {"length": 1000}


def test_missing_secret_key_refuses_to_start(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app()


def test_events_stream_server_sent_events_unbuffered(client):
    resp = client.get("/events?count=3&interval=0")
    assert resp.status_code == 200
    assert resp.mimetype == "text/event-stream"
    assert resp.headers["X-Accel-Buffering"] == "no"
    events = [block for block in resp.get_data(as_text=True).split("\n\n") if block]
    assert [block.splitlines()[0] for block in events] == ["id: 0", "id: 1", "id: 2"]
    assert '"version": "' + __version__ + '"' in events[0]


def test_events_bounds_what_a_client_asks(client):
    resp = client.get("/events?count=100000&interval=0")
    assert resp.get_data(as_text=True).count("\n\n") == 100
