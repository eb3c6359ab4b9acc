"""One nginx load balancer, two app servers: balancing, failover, trust, rolling updates.

Requests go from the controller to the balancer's address on the scenario's docker
network (and, to check what the app servers expose, to theirs). The tests run in
file order; the rolling updates come last.
"""

import os

import pytest
import testinfra
import testlib

testinfra_hosts = ["ansible://fd-cluster-lb"]

APP = "hello"
LB = "fd-cluster-lb"
APPS = {"fd-cluster-app1": "app1.test", "fd-cluster-app2": "app2.test"}
NAME = "cluster.test"
PORT = 8000


def app_host(name):
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")


@pytest.fixture(scope="module")
def lb_cert(tmp_path_factory):
    lb = app_host(LB)
    path = tmp_path_factory.mktemp("lb") / "lb.crt"
    crt = lb.check_output("ls /etc/nginx/ssl/*.crt").split()[0]
    path.write_text(lb.file(crt).content_string)
    return str(path)


@pytest.fixture
def via_lb(lb_cert):
    """A request through the balancer over verified HTTPS."""
    lb_ip, _ = testlib.network_addresses(LB)

    def _request(path, **kwargs):
        return testlib.request(lb_ip, path, cafile=lb_cert, server_name=NAME, **kwargs)

    return _request


def _recap(output, host):
    line = next(l for l in output.splitlines() if l.startswith(host) and "ok=" in l)
    return dict(part.split("=") for part in line.split(":", 1)[1].split())


def make_version(tmp_path_factory, version, replace=()):
    return testlib.sample_app_copy(tmp_path_factory.mktemp(f"v{version}") / "app", version, replace)


def direct_version(name):
    """/version straight from an app server's WSGI port."""
    ip, _ = testlib.network_addresses(name)
    return testlib.request(ip, "/version", scheme="http", port=PORT).json()["version"]


def backend_files(host):
    return host.check_output("cat /etc/nginx/backends.d/*.conf")


def test_requests_reach_both_app_servers(via_lb):
    _, controller_ip = testlib.network_addresses(LB)
    answers = [via_lb("/whoami").json() for _ in range(20)]
    assert {a["hostname"] for a in answers} == set(APPS.values())
    for answer in answers:
        # The app sees the real client and scheme, as the balancer forwarded them.
        assert answer["client"] == controller_ip
        assert answer["scheme"] == "https"
        assert answer["host"] == NAME


def test_spoofed_forwarded_for_through_the_balancer_is_ignored(via_lb):
    _, controller_ip = testlib.network_addresses(LB)
    answer = via_lb("/whoami", headers={"X-Forwarded-For": "203.0.113.9"}).json()
    assert answer["client"] == controller_ip


def test_balancer_upstream_lists_every_app_server(host):
    config = host.check_output("cat /etc/nginx/conf.d/*.conf")
    assert "least_conn;" in config
    assert "keepalive 16;" in config
    assert "include /etc/nginx/backends.d/*.conf;" in config
    files = backend_files(host)
    for name in APPS:
        ip, _ = testlib.network_addresses(name)
        assert f"server {ip}:{PORT} max_fails=1 fail_timeout=10s;" in files
    assert " down;" not in files


@pytest.mark.parametrize("name", APPS)
def test_app_servers_expose_only_the_wsgi_port_on_their_address(name):
    server = app_host(name)
    ip, _ = testlib.network_addresses(name)
    listening = server.check_output("ss -Hltn | awk '{print $4}'").split()
    public = [a for a in listening if not a.startswith(("127.", "[::1]"))]
    assert public == [f"{ip}:{PORT}"]
    assert not server.package("nginx").is_installed
    env = server.file(f"/etc/{APP}/app.env").content_string
    lb_ip, _ = testlib.network_addresses(LB)
    assert f"TRUSTED_PROXIES={lb_ip}\n" in env


@pytest.mark.parametrize("name", APPS)
def test_app_servers_trust_forwarded_headers_only_from_the_balancer(name):
    ip, controller_ip = testlib.network_addresses(name)
    answer = testlib.request(ip, "/whoami", scheme="http", port=PORT,
                             headers={"X-Forwarded-For": "203.0.113.9",
                                      "X-Forwarded-Proto": "https"}).json()
    assert answer["client"] == controller_ip
    assert answer["scheme"] == "http"


def test_a_stopped_app_server_is_skipped(via_lb):
    app1 = app_host("fd-cluster-app1")
    app1.check_output(f"systemctl stop {APP}.socket {APP}.service")
    try:
        answers = [via_lb("/whoami") for _ in range(100)]
        assert [a.status for a in answers] == [200] * 100
        assert {a.json()["hostname"] for a in answers} == {APPS["fd-cluster-app2"]}
    finally:
        app1.check_output(f"systemctl start {APP}.socket {APP}.service")
    # Back in the pool once its fail_timeout (10 s) has passed.
    testlib.wait_for(
        lambda: {via_lb("/whoami").json()["hostname"] for _ in range(10)} == set(APPS.values()),
        timeout=40, what="both app servers answering again")


def test_rolling_update_under_load(host, via_lb, tmp_path_factory):
    path = make_version(tmp_path_factory, "2.0.0")
    loop = testlib.LoadLoop(lambda: via_lb("/version"), clients=4, max_requests=100000,
                            max_seconds=300, label=lambda r: r.json()["version"])
    result = testlib.run_under_load(loop, lambda: testlib.run_playbook(
        "playbooks/rolling-deploy.yml", "all", {"app_source_path": path}), until_seen="2.0.0")
    assert result.returncode == 0, result.stdout[-3000:]
    print("rolling update under load:", loop)
    assert loop.failures == [], loop
    assert loop.sent >= 1000, loop
    assert {"1.0.0", "2.0.0"} <= set(loop.seen), loop
    # One host per batch (serial 1): each batch drains, deploys and restores its host.
    batches = result.stdout.split("PLAY [Roll a new release over the app servers]")[1:]
    assert len(batches) == 2
    for batch, (mine, other) in zip(batches, [list(APPS), list(APPS)[::-1]]):
        assert mine in batch and other not in batch.split("PLAY RECAP")[0]
        # Marked down, drained, switched, marked up again.
        assert batch.index("Mark the app server in the load balancers") \
            < batch.index("Wait for the requests in flight to finish") \
            < batch.index("Point current at the release") \
            < batch.rindex("Mark the app server in the load balancers")
    for name in APPS:
        assert direct_version(name) == "2.0.0"
    assert " down;" not in backend_files(host)


def test_a_failing_host_stops_the_roll_and_the_rest_keeps_serving(host, via_lb, tmp_path_factory):
    broken = make_version(tmp_path_factory, "3.0.0",
                          [("import os\n", "import os\nraise ImportError('broken on purpose')\n")])
    loop = testlib.LoadLoop(lambda: via_lb("/whoami"), clients=4, max_requests=100000,
                            max_seconds=300, label=lambda r: r.json()["hostname"])
    result = testlib.run_under_load(loop, lambda: testlib.run_playbook(
        "playbooks/rolling-deploy.yml", "all", {"app_source_path": broken}))
    print("failed roll under load:", loop)
    assert result.returncode != 0
    assert "broken on purpose" in result.stdout
    assert loop.failures == [], loop
    assert _recap(result.stdout, "fd-cluster-app1")["failed"] == "1"
    # app2 was never reached; both still run 2.0.0; app1 stays out of the pool.
    assert "fd-cluster-app2" not in result.stdout.split("PLAY RECAP")[0]
    assert direct_version("fd-cluster-app1") == direct_version("fd-cluster-app2") == "2.0.0"
    ip1, _ = testlib.network_addresses("fd-cluster-app1")
    assert f"server {ip1}:{PORT} max_fails=1 fail_timeout=10s down;" in backend_files(host)
    answers = {via_lb("/whoami").json()["hostname"] for _ in range(20)}
    assert answers == {APPS["fd-cluster-app2"]}

    # site.yml brings it back into the pool.
    result = testlib.run_playbook("site.yml", "all")
    assert result.returncode == 0, result.stdout[-3000:]
    assert " down;" not in backend_files(host)
    testlib.wait_for(
        lambda: {via_lb("/whoami").json()["hostname"] for _ in range(10)} == set(APPS.values()),
        timeout=30, what="both app servers in the pool again")
