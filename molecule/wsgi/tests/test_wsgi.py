"""uWSGI and waitress, and the https, http and wsgi profiles: the intended server answers
on the intended path, limits hold, and the profile's nginx state is right."""

import collections
import concurrent.futures
import json
import re
import shlex

import pytest
import testlib

APP = "hello"
# What the answering process's command line contains, per server.
PROCESS_MARK = {"gunicorn": "bin/gunicorn", "uwsgi": "uWSGI", "waitress": "waitress_serve.py"}


def processes(host):
    """Command lines of every process on the host."""
    out = host.check_output("ps -eo args=")
    return out.splitlines()


@pytest.fixture
def server(hostvars):
    return hostvars.get("wsgi_server", "gunicorn")


@pytest.fixture
def units(hostvars):
    """The service's units without suffix: hello, or hello@1 ... hello@N (wsgi_instances)."""
    count = int(hostvars.get("wsgi_instances", 1))
    return [APP] if count == 1 else [f"{APP}@{i}" for i in range(1, count + 1)]


@pytest.fixture
def get(request, profile, addresses, hostvars):
    """A request along the profile's public path, for the site's name."""
    server_ip, _ = addresses
    if profile == "https":
        return request.getfixturevalue("https")
    name = hostvars["nginx_server_names"][0] if profile == "http" else None

    def _request(path, **kwargs):
        return testlib.request(server_ip, path, scheme="http", server_name=name, **kwargs)

    return _request


def test_service_and_socket_running(host, profile, units):
    for name in units:
        for unit in (f"{name}.socket", f"{name}.service"):
            assert host.service(unit).is_running, unit
            assert host.service(unit).is_enabled, unit
        listen = host.check_output(f"systemctl show -p Listen --value {name}.socket")
        if profile == "wsgi":
            assert listen.startswith("0.0.0.0:80 ")
        elif name == APP:
            assert listen.startswith(f"/run/{APP}/wsgi.sock ")
        else:
            assert listen.startswith(f"/run/{APP}/wsgi-{name.partition('@')[2]}.sock ")


def test_every_instance_answers(host, units, get):
    """Requests are spread over every instance (wsgi_instances), each its own service."""
    seen = set()
    for _ in range(30):
        pid = get("/whoami").json()["pid"]
        cgroup = host.file(f"/proc/{pid}/cgroup").content_string
        seen |= {name for name in units if f"/{name}.service" in cgroup}
    assert seen == set(units)


def test_the_configured_server_answers(host, server, units, get):
    body = get("/whoami").json()
    cmdline = host.file(f"/proc/{body['pid']}/cmdline").content_string
    assert PROCESS_MARK[server] in cmdline
    cgroup = host.file(f"/proc/{body['pid']}/cgroup").content_string
    assert any(f"/{name}.service" in cgroup for name in units)
    user = host.check_output(f"ps -o user= -p {body['pid']}").strip()
    assert user == APP


def test_no_other_server_installed_or_running(host, server):
    running = processes(host)
    assert any(PROCESS_MARK[server] in p for p in running)
    for other, mark in PROCESS_MARK.items():
        if other != server:
            assert not [p for p in running if mark in p and "ps -eo" not in p], other
    assert not host.file(f"/srv/{APP}/current/venv/bin/gunicorn").exists or server == "gunicorn"
    assert not host.file(f"/srv/{APP}/current/venv/bin/waitress-serve").exists or server == "waitress"


def test_healthz_and_whoami_through_the_profile_path(profile, get, addresses):
    _, controller_ip = addresses
    assert get("/healthz").json()["status"] == "ok"
    resp = get("/whoami", headers={"X-Forwarded-For": "203.0.113.66"})
    body = resp.json()
    # The client address is the real one: through nginx (one trusted hop), and
    # directly (no hop trusted, so the spoofed header is ignored).
    assert body["client"] == controller_ip
    assert body["scheme"] == ("https" if profile == "https" else "http")
    if profile == "wsgi":
        assert resp.header("server") != "nginx"
    else:
        assert resp.header("server") == "nginx"


def test_a_trusted_proxy_in_front_of_nginx_passes_on_client_and_scheme(host, hostvars, get, addresses):
    """nginx_trusted_proxies: a load balancer that terminates TLS (127.0.0.1 on the
    host stands for it) says who the client is and that it used https; the app sees
    both. The same headers from any other peer are ignored."""
    if not hostvars.get("nginx_trusted_proxies"):
        pytest.skip("no proxy in front of nginx on this host")
    name = hostvars["nginx_server_names"][0]
    headers = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9", "X-Forwarded-Proto": "https"}

    def via_proxy(extra=None):
        script = ("import json, sys, urllib.request as u; "
                  "r = u.Request('http://127.0.0.1/whoami', headers=json.loads(sys.argv[1])); "
                  "print(u.urlopen(r).read().decode())")
        out = host.check_output(f"python3 -c {shlex.quote(script)} "
                                f"{shlex.quote(json.dumps({'Host': name, **headers, **(extra or {})}))}")
        return json.loads(out)

    body = via_proxy()
    # The right-most address the proxy did not add itself: the client it saw.
    assert (body["client"], body["scheme"], body["url"]) == ("203.0.113.9", "https", f"https://{name}/whoami")
    body = via_proxy({"X-Forwarded-Port": "8443"})
    assert body["url"] == f"https://{name}:8443/whoami"
    # nginx's access log has the client too (the real-IP module).
    assert "203.0.113.9 " in host.check_output("tail -n 3 /var/log/nginx/access.log")

    # The controller is no trusted proxy: its headers change nothing.
    _, controller_ip = addresses
    body = get("/whoami", headers={**headers, "X-Forwarded-Port": "8443"}).json()
    assert (body["client"], body["scheme"], body["url"]) == (controller_ip, "http", f"http://{name}/whoami")


def test_nginx_state_follows_the_profile(host, profile):
    nginx = host.service("nginx")
    if profile == "wsgi":
        assert not nginx.is_running
        # Disabled, or never installed.
        enabled = host.run("systemctl is-enabled nginx.service").stdout.strip()
        assert enabled in ("disabled", "not-found", "")
    else:
        assert nginx.is_running
        assert nginx.is_enabled
        assert host.run("nginx -t").rc == 0


def test_static_files(profile, get):
    css = get("/static/style.css")
    assert css.status == 200
    assert "text/css" in css.header("content-type")
    if profile != "wsgi":
        # nginx serves it from disk, with its cache headers.
        assert css.header("server") == "nginx"
        assert "max-age=" in css.header("cache-control")


def test_body_limit(host, hostvars, profile, get):
    limit = int(hostvars.get("wsgi_max_request_body_size", 10485760))
    ok = get("/echo", method="POST", body=b"x" * (limit // 2))
    assert ok.status == 200
    assert ok.json() == {"length": limit // 2}
    too_big = get("/echo", method="POST", body=b"x" * (limit + 1024 * 1024))
    assert too_big.status == 413
    if profile == "wsgi":
        # The WSGI server itself refuses it: there is no nginx.
        assert too_big.header("server") != "nginx"
    else:
        # nginx refuses it first: its client_max_body_size follows the WSGI limit.
        assert too_big.header("server") == "nginx"
        conf = host.file(f"/etc/nginx/conf.d/{APP}.conf").content_string
        assert f"client_max_body_size {limit};" in conf


def test_reload_is_graceful_where_supported(host, server, units, get):
    for name in units:
        unit = f"{name}.service"
        can_reload = host.check_output(f"systemctl show -p CanReload --value {unit}")
        if server == "waitress":
            # Waitress cannot reload: code changes restart it (the socket stays open).
            assert can_reload == "no"
            continue
        assert can_reload == "yes"
        master = testlib.main_pid(host, unit)
        host.check_output(f"systemctl reload {unit}")
        testlib.wait_for(lambda: get("/healthz").status == 200, what="site after reload")
        assert testlib.main_pid(host, unit) == master
        assert host.service(unit).is_running


def test_systemd_restarts_the_server_after_kill_9(host, units, get):
    unit = f"{units[0]}.service"
    before = testlib.main_pid(host, unit)
    host.check_output(f"kill -9 {before}")
    testlib.wait_for(
        lambda: testlib.main_pid(host, unit) not in (0, before),
        what="a new main process",
    )
    testlib.wait_for(lambda: get("/healthz").status == 200, what="site answering again")


def test_service_is_sandboxed(host, units, get):
    for name in units:
        testlib.assert_sandboxed(host, f"{name}.service", writable=f"/var/lib/{APP}")
    # The app still works in it.
    assert get("/healthz").status == 200


def test_posts_through_nginx_never_meet_a_closing_backend_connection(host, server, profile, get):
    """uWSGI's http-socket closes each connection after its answer without a
    `Connection: close`. With upstream keep-alive nginx reused such connections and
    about 1% of these POSTs got 502 (nginx retries only idempotent requests); so no
    upstream keep-alive to uWSGI, and keep-alive to the servers that honour it."""
    if profile == "wsgi":
        pytest.skip("no nginx in this profile")
    conf = host.file(f"/etc/nginx/conf.d/{APP}.conf").content_string
    upstream = conf.split("upstream ", 1)[1].split("}", 1)[0]
    keepalive = re.findall(r"^\s*keepalive\s+(\d+);", upstream, re.M)
    assert keepalive == ([] if server == "uwsgi" else ["16"])

    def post_many(worker):
        return [get("/echo", method="POST", body=f"{worker}-{i}".encode()).status for i in range(100)]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = collections.Counter(s for batch in pool.map(post_many, range(16)) for s in batch)
    assert statuses == {200: 1600}


@pytest.fixture
def front(request, profile, addresses, hostvars):
    """Where a client reaches the app on the profile's public path: (address, server
    name, CA file, scheme) for testlib's WebSocket and event_stream."""
    server_ip, _ = addresses
    if profile == "https":
        return server_ip, hostvars["nginx_server_names"][0], request.getfixturevalue("server_cert"), "https"
    return server_ip, hostvars["nginx_server_names"][0] if profile == "http" else None, None, "http"


def test_websocket_echo_under_uwsgi(host, server, hostvars, front):
    """uWSGI takes a WebSocket through its own API (the sample app uses it there):
    behind nginx over TLS (the https profile) and alone on port 80 (the wsgi profile,
    with wsgi_long_lived: no harakiri, more threads)."""
    if server != "uwsgi":
        pytest.skip("the WebSocket echo under uWSGI")
    address, name, cafile, scheme = front
    ws = testlib.WebSocket(address, "/ws", name, cafile, scheme=scheme)
    try:
        assert ws.status == 101, ws
        for text in ("hello", "x" * 70000):
            ws.send(text)
            assert ws.receive().endswith(f": {text}")
    finally:
        ws.close()
    config = host.file(f"/etc/{APP}/uwsgi.ini").content_string
    if hostvars.get("wsgi_long_lived"):
        assert "harakiri" not in config.replace("no harakiri", "") and "threads = 32" in config
    else:
        assert "harakiri = 30" in config


def test_server_sent_events_arrive_one_by_one(hostvars, front):
    """The app's event stream under uWSGI and Waitress, behind nginx (https and http
    profiles) and alone (wsgi profile): events arrive as they are sent; with
    wsgi_long_lived (uwsgi13: no harakiri, wsgi_timeout 5 there) a stream longer than
    wsgi_timeout is not cut."""
    address, name, cafile, scheme = front
    long_lived = hostvars.get("wsgi_long_lived", False)
    count, interval = (4, 2.5) if long_lived else (3, 1.0)
    arrivals = testlib.event_stream(address, f"/events?count={count}&interval={interval}", name, cafile,
                                    scheme=scheme)
    assert [n for n, _ in arrivals] == list(range(count)), arrivals
    gaps = [later - earlier for (_, earlier), (_, later) in zip(arrivals, arrivals[1:])]
    assert all(gap >= interval * 0.6 for gap in gaps), gaps
    if long_lived:
        assert arrivals[-1][1] - arrivals[0][1] > int(hostvars["wsgi_timeout"]), arrivals
