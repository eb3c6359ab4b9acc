"""Two nginx balancers, two app servers: balancing, instances, firewall, trust, rolling updates.

fd-cluster-lb only balances; fd-cluster-app1 is an app server and a balancer;
fd-cluster-app2 runs two gunicorn instances. Requests go from the controller to the
balancers' addresses on the scenario's docker network; what only the balancers may
reach (the WSGI ports) is fetched from inside a balancer. The tests run in file
order; the rolling updates come last.
"""

import json
import os
import re
import socket

import pytest
import testinfra
import testlib

testinfra_hosts = ["ansible://fd-cluster-lb"]

APP = "hello"
LB = "fd-cluster-lb"
APP1, APP2 = "fd-cluster-app1", "fd-cluster-app2"
DB = "fd-cluster-db"
# The site's CA for the database connections, on every host (service_tls role).
CA = "/etc/ssl/flaskdeploy/ca.crt"
BALANCERS = [LB, APP1]
APPS = {APP1: "app1.test", APP2: "app2.test"}
# The WSGI instances of each app server: wsgi_instances ports from 8000.
INSTANCES = {APP1: ["8000"], APP2: ["8000", "8001"]}
EVERY_INSTANCE = {(APPS[name], port) for name, ports in INSTANCES.items() for port in ports}
NAME = "cluster.test"


def get_host(name):
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")


def ip(name):
    return testlib.network_addresses(name)[0]


def controller_ip():
    return testlib.network_addresses(LB)[1]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """Each balancer's self-signed certificate, as a CA file for the controller."""
    paths = {}
    for name in BALANCERS:
        balancer = get_host(name)
        path = tmp_path_factory.mktemp(name) / "lb.crt"
        crt = balancer.check_output("ls /etc/nginx/ssl/*.crt").split()[0]
        path.write_text(balancer.file(crt).content_string)
        paths[name] = str(path)
    return paths


@pytest.fixture
def via(certs):
    """via(balancer)(path, ...): a request through that balancer over verified HTTPS."""
    def _through(balancer):
        def _request(path, **kwargs):
            return testlib.request(ip(balancer), path, cafile=certs[balancer], server_name=NAME, **kwargs)
        return _request
    return _through


@pytest.fixture
def via_lb(via):
    return via(LB)


def fetch_from(name, url, headers=None):
    """GET url from inside container `name` (python3's urllib); (status, body text)."""
    script = (
        "import json, sys, urllib.request, urllib.error\n"
        "req = urllib.request.Request(sys.argv[1], headers=json.loads(sys.argv[2]))\n"
        "try:\n"
        "    r = urllib.request.urlopen(req, timeout=10); print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code); print(e.read().decode())\n"
    )
    out = get_host(name).check_output(
        "python3 -c %s %s %s", script, url, json.dumps(headers or {}))
    status, _, body = out.partition("\n")
    return int(status), body


def instance_versions():
    """/version of every WSGI instance, fetched from the balancer (the firewall lets
    nobody else reach them)."""
    versions = {}
    for name, ports in INSTANCES.items():
        for port in ports:
            status, body = fetch_from(LB, f"http://{ip(name)}:{port}/version")
            assert status == 200, body
            versions[(name, port)] = json.loads(body)["version"]
    return versions


def make_version(tmp_path_factory, version, replace=()):
    return testlib.sample_app_copy(tmp_path_factory.mktemp(f"v{version}") / "app", version, replace)


def backend_files(name):
    return get_host(name).check_output("cat /etc/nginx/backends.d/*.conf")


def answering(request, count=15):
    return {(a["hostname"], a["server_port"]) for a in (request("/whoami").json() for _ in range(count))}


@pytest.mark.parametrize("balancer", BALANCERS)
def test_websockets_and_http2_through_each_balancer(certs, balancer):
    """Through a balancer, a WebSocket reaches an app server's gunicorn (the balancer's
    site passes the upgrade on; its backends' keep-alive stays for other requests),
    and HTTPS clients get HTTP/2."""
    ws = testlib.WebSocket(ip(balancer), "/ws", NAME, certs[balancer])
    try:
        assert ws.status == 101, ws
        ws.send(f"via {balancer}")
        assert ws.receive().endswith(f": via {balancer}")
    finally:
        ws.close()
    protocol, resp = testlib.http2_request(ip(balancer), "/healthz", NAME, certs[balancer])
    assert protocol == "h2" and resp.status == 200


@pytest.mark.parametrize("balancer", BALANCERS)
def test_requests_reach_every_instance_through_each_balancer(via, balancer):
    answers = [via(balancer)("/whoami").json() for _ in range(30)]
    assert {(a["hostname"], a["server_port"]) for a in answers} == EVERY_INSTANCE
    for answer in answers:
        # The app sees the real client and scheme, as the balancer forwarded them.
        assert answer["client"] == controller_ip()
        assert answer["scheme"] == "https"
        assert answer["host"] == NAME


def test_spoofed_forwarded_for_through_the_balancer_is_ignored(via_lb):
    answer = via_lb("/whoami", headers={"X-Forwarded-For": "203.0.113.9"}).json()
    assert answer["client"] == controller_ip()


@pytest.mark.parametrize("balancer", BALANCERS)
def test_each_balancer_lists_every_instance_in_its_upstream(balancer):
    config = get_host(balancer).check_output("cat /etc/nginx/conf.d/*.conf")
    assert "least_conn;" in config
    assert "keepalive 16;" in config
    assert "include /etc/nginx/backends.d/*.conf;" in config
    files = backend_files(balancer)
    for name, ports in INSTANCES.items():
        for port in ports:
            assert f"server {ip(name)}:{port} max_fails=1 fail_timeout=10s;" in files
    assert len([l for l in files.splitlines() if l.startswith("server ")]) == len(EVERY_INSTANCE)
    assert " down;" not in files


def test_several_instances_are_instances_of_template_units():
    app2 = get_host(APP2)
    for port in INSTANCES[APP2]:
        assert app2.service(f"{APP}@{port}.socket").is_enabled
        assert app2.service(f"{APP}@{port}.service").is_running
    assert app2.file(f"/etc/systemd/system/{APP}@.service").exists
    assert not app2.file(f"/etc/systemd/system/{APP}.service").exists
    # One instance: the plain units.
    app1 = get_host(APP1)
    assert app1.service(f"{APP}.service").is_running
    assert not app1.file(f"/etc/systemd/system/{APP}@.service").exists


def test_static_files_from_disk_on_an_app_server_proxied_by_a_balancer_only(via):
    css = (testlib.REPO / "sample_app/hello/static/style.css").read_bytes()
    # fd-cluster-app1 has the release on disk: its nginx serves the file (expires 7d).
    on_disk = via(APP1)("/static/style.css")
    assert on_disk.status == 200 and on_disk.body == css
    assert on_disk.headers["cache-control"] == "max-age=604800"
    # fd-cluster-lb has no release: it passes /static/ to the app servers.
    proxied = via(LB)("/static/style.css")
    assert proxied.status == 200 and proxied.body == css
    assert "max-age=604800" not in proxied.headers.get("cache-control", "")
    assert "alias " in get_host(APP1).check_output("cat /etc/nginx/conf.d/*.conf")
    assert "alias " not in get_host(LB).check_output("cat /etc/nginx/conf.d/*.conf")


@pytest.mark.parametrize("name", APPS)
def test_app_servers_listen_only_on_their_own_address(name):
    server = get_host(name)
    listening = set(server.check_output("ss -Hltn | awk '{print $4}'").split())
    public = {a for a in listening if not a.startswith(("127.", "[::1]"))}
    wsgi = {f"{ip(name)}:{port}" for port in INSTANCES[name]}
    if name in BALANCERS:
        # Also a balancer: nginx on 80 and 443.
        assert public - wsgi <= {"0.0.0.0:80", "0.0.0.0:443", "[::]:80", "[::]:443"}
        assert wsgi <= public
    else:
        assert public == wsgi
        assert not server.package("nginx").is_installed
    env = server.file(f"/etc/{APP}/app.env").content_string
    trusted = next(l for l in env.splitlines() if l.startswith("FLASKDEPLOY_TRUSTED_PROXIES="))
    assert set(trusted.partition("=")[2].split(",")) == {ip(b) for b in BALANCERS}


@pytest.mark.parametrize("name", APPS)
def test_the_firewall_lets_only_the_balancers_reach_the_wsgi_ports(name):
    for port in INSTANCES[name]:
        # From the controller: dropped (no answer, not even a refusal).
        with pytest.raises(TimeoutError):
            socket.create_connection((ip(name), int(port)), timeout=3).close()
        # From each balancer: served.
        for balancer in BALANCERS:
            status, _ = fetch_from(balancer, f"http://{ip(name)}:{port}/healthz")
            assert status == 200
    ruleset = get_host(name).check_output("nft list table inet flaskdeploy")
    assert "policy drop;" in ruleset
    ports = "-".join(dict.fromkeys([INSTANCES[name][0], INSTANCES[name][-1]]))
    assert f"ip saddr {{ {ip(LB)}, {ip(APP1)} }} tcp dport {ports} accept" in ruleset


def test_the_firewall_drops_a_port_nobody_opened():
    """A service listening on a port the firewall does not open is unreachable."""
    lb = get_host(LB)
    lb.check_output("systemd-run --unit=fd-stray -p DynamicUser=yes python3 -m http.server 9000")
    try:
        testlib.wait_for(lambda: lb.run("python3 -c 'import urllib.request as u; "
                                        "u.urlopen(\"http://127.0.0.1:9000/\", timeout=2)'").rc == 0,
                         timeout=20, what="the stray server answering locally")
        with pytest.raises(TimeoutError):
            socket.create_connection((ip(LB), 9000), timeout=3).close()
        # HTTPS on the same host is open.
        socket.create_connection((ip(LB), 443), timeout=3).close()
    finally:
        lb.run("systemctl stop fd-stray")


def test_the_app_servers_use_the_database_host_only_they_can_reach():
    """PostgreSQL and Redis on the `databases` host: each app server's DATABASE_URL
    and REDIS_URL name it, and the app's one-off command logs in with them; the
    controller and a balancer that is no app server get no answer (the firewall), and
    the password is kept on the database host alone."""
    db = get_host(DB)
    for name in APPS:
        app = get_host(name)
        env = app.file(f"/etc/{APP}/app.env").content_string
        assert f"@{ip(DB)}:5432/{APP}?sslmode=verify-full&sslrootcert={CA}" in env
        assert f"rediss://{APP}:" in env and f"@{ip(DB)}:6379/0?ssl_cert_reqs=required&ssl_ca_certs={CA}" in env
        user = app.check_output(f"{APP}-run sh -c 'psql \"$DATABASE_URL\" -tAc \"SELECT current_user\"'")
        assert user.strip() == APP
        redis_cli = f"redis-cli --tls --cacert {CA} -u \"$REDIS_URL\" --no-auth-warning"
        assert app.check_output(f"{APP}-run sh -c '{redis_cli} ping'").strip() == "PONG"
        # The passwords stay on the database host; the CA's certificate alone comes.
        assert not app.file("/etc/flaskdeploy/postgresql").exists and not app.file("/etc/flaskdeploy/redis").exists
        assert not app.file("/etc/flaskdeploy/tls").exists and app.file(CA).mode == 0o644
    assert db.file(f"/etc/flaskdeploy/postgresql/{APP}.password").mode == 0o600
    for port in (5432, 6379):
        with pytest.raises(TimeoutError):
            socket.create_connection((ip(DB), port), timeout=3).close()
        probe = (f"python3 -c 'import socket; socket.create_connection((\"{ip(DB)}\", {port}), timeout=3)'")
        assert "timed out" in get_host(LB).run(probe).stderr
    ruleset = db.check_output("nft list table inet flaskdeploy")
    assert f"ip saddr {{ {ip(APP1)}, {ip(APP2)} }} tcp dport 5432 accept" in ruleset
    # pg_hba lets the app servers in for the app's database and role only.
    hba = db.check_output("cat /etc/postgresql/15/main/pg_hba.conf")
    assert re.search(rf"^hostssl\s+{APP}\s+{APP}\s+{re.escape(ip(APP1))}/32\s+scram-sha-256", hba, re.M), hba
    assert not re.search(rf"^host\s+{APP}\s", hba, re.M), hba


def served_certificate(host, port, starttls=""):
    """The certificate the database host serves on port (openssl s_client from host,
    checked against the CA and the address): openssl x509's subject, SAN and dates."""
    return host.check_output(
        f"openssl s_client -connect {ip(DB)}:{port} {starttls} -CAfile {CA} -verify_ip {ip(DB)}"
        " -verify_return_error </dev/null 2>/dev/null"
        " | openssl x509 -noout -ext subjectAltName -enddate -serial")


def test_the_database_connections_are_tls_checked_against_the_site_ca():
    """Both services speak TLS with the database host's certificate (for its address,
    signed by the site's CA); PostgreSQL refuses the app's role without TLS, Redis
    refuses plain connections, and a client that trusts another CA gets nowhere
    (sslmode=verify-full). The keys are root's (copies the postgres and redis groups
    read)."""
    app = get_host(APP1)
    for port, starttls in ((5432, "-starttls postgres"), (6379, "")):
        assert f"IP Address:{ip(DB)}" in served_certificate(app, port, starttls)
    env = dict(line.split("=", 1) for line in app.file(f"/etc/{APP}/app.env").content_string.splitlines()
               if "=" in line)
    database_url, redis_url = env["DATABASE_URL"].strip("'\""), env["REDIS_URL"].strip("'\"")
    plain = database_url.replace("sslmode=verify-full", "sslmode=disable")
    result = app.run(f"psql '{plain}' -tAc 'SELECT 1'")
    assert result.rc != 0 and "no encryption" in result.stderr, result.stderr
    # Another CA (made here, as anyone could) does not vouch for the database host.
    app.check_output("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1"
                     " -subj /CN=other -keyout /tmp/other-ca.key -out /tmp/other-ca.crt 2>/dev/null")
    result = app.run(f"psql '{database_url.replace(CA, '/tmp/other-ca.crt')}' -tAc 'SELECT 1'")
    assert result.rc != 0 and "certificate verify failed" in result.stderr, result.stderr
    result = app.run(f"redis-cli --tls --cacert /tmp/other-ca.crt -u '{redis_url}' --no-auth-warning ping")
    assert "PONG" not in result.stdout and "certificate verify failed" in result.stdout + result.stderr, result
    result = app.run(f"redis-cli -u '{redis_url.replace('rediss://', 'redis://')}' --no-auth-warning ping")
    assert "PONG" not in result.stdout, result.stdout
    db = get_host(DB)
    assert db.file("/etc/flaskdeploy/tls").mode == 0o700
    for path, owner, group, mode in (("/etc/flaskdeploy/tls/ca.key", "root", "root", 0o600),
                                     ("/etc/flaskdeploy/tls/server.key", "root", "root", 0o600),
                                     ("/etc/postgresql/15/main/flaskdeploy-server.key", "root", "postgres", 0o640),
                                     ("/etc/redis/flaskdeploy-tls.key", "root", "redis", 0o640)):
        key = db.file(path)
        assert (key.user, key.group, key.mode) == (owner, group, mode), path


def test_an_app_server_that_left_the_inventory_loses_its_database_access():
    """pg_hba.conf lines of the app's database and role for an address no app server
    has (one that left the inventory), or without TLS, go at the next run; the app
    servers' stay. The same run renews the database host's certificate when it would
    expire within service_tls_renew_days (here: all of it), and both services serve
    the new one, which the app servers trust with the CA they have."""
    db, app = get_host(DB), get_host(APP1)
    hba = "/etc/postgresql/15/main/pg_hba.conf"
    # (The file may not end in a newline: postgresql_pg_hba writes none.)
    db.check_output(f"printf '\\nhostssl {APP} {APP} 10.99.99.99/32 scram-sha-256\\n"
                    f"host {APP} {APP} {ip(APP2)}/32 scram-sha-256\\n' >> {hba}")
    before = served_certificate(app, 6379)
    # Renewed when it has fewer days left than service_tls_renew_days: one more than it has.
    end = db.check_output(f"date -d \"$(openssl x509 -enddate -noout -in /etc/flaskdeploy/tls/server.crt"
                          " | cut -d= -f2)\" +%s")
    left = (int(end) - int(db.check_output("date +%s"))) // 86400 + 1
    result = testlib.run_playbook("site.yml", DB, extra_vars={"service_tls_certificate_days": left + 30,
                                                              "service_tls_renew_days": left})
    assert result.returncode == 0, result.stdout[-3000:]
    lines = db.check_output(f"grep -E '^host(ssl)?[[:space:]]+{APP}[[:space:]]' {hba}")
    assert "10.99.99.99" not in lines and not re.search(r"^host\s", lines, re.M), lines
    flat = [" ".join(line.split()) for line in lines.splitlines()]
    assert all(f"hostssl {APP} {APP} {ip(name)}/32 scram-sha-256" in flat for name in APPS), lines
    renewed = served_certificate(app, 6379)
    assert renewed != before and renewed == served_certificate(app, 5432, "-starttls postgres")
    assert app.check_output(f"{APP}-run sh -c 'psql \"$DATABASE_URL\" -tAc \"SELECT 1\"'").strip() == "1"


def test_a_certificate_a_cut_run_copied_is_served_after_the_next_run():
    """A run cut between copying the host's certificate where PostgreSQL and Redis
    read it and their reload or restart leaves them on the one they read before, and
    the next run finds the copies unchanged. Emulated: both services made to read
    another certificate (signed here by the site's CA), then the copies put back, newer
    than their last read; a run on the database host reloads PostgreSQL and restarts
    Redis onto the copies."""
    db, app = get_host(DB), get_host(APP1)
    copies = {5432: "/etc/postgresql/15/main/flaskdeploy-server.crt", 6379: "/etc/redis/flaskdeploy-tls.crt"}
    ours = db.check_output(f"openssl x509 -noout -serial -in {copies[5432]}")
    db.check_output(
        "openssl req -new -key /etc/flaskdeploy/tls/server.key -subj /CN=other"
        f" -addext subjectAltName=IP:{ip(DB)} 2>/dev/null | openssl x509 -req -days 2 -copy_extensions copy"
        " -CA /etc/ssl/flaskdeploy/ca.crt -CAkey /etc/flaskdeploy/tls/ca.key -out /root/other.crt 2>/dev/null")
    other = db.check_output("openssl x509 -noout -serial -in /root/other.crt")
    assert other != ours
    for copy in copies.values():
        db.check_output(f"cp {copy} {copy}.ours && cp /root/other.crt {copy}")
    db.check_output("systemctl reload postgresql.service && systemctl restart redis-server.service")
    for port, starttls in ((5432, "-starttls postgres"), (6379, "")):
        testlib.wait_for(lambda: other.split("=")[1] in served_certificate(app, port, starttls),
                         timeout=15, what=f"the other certificate served on {port}")
    for copy in copies.values():
        db.check_output(f"cp {copy}.ours {copy} && rm {copy}.ours")  # (cp: a new time, owner and mode kept)
    result = testlib.run_playbook("site.yml", DB)
    assert result.returncode == 0, result.stdout[-3000:]
    for port, starttls in ((5432, "-starttls postgres"), (6379, "")):
        # (A reload is a signal: PostgreSQL reads the files a moment later.)
        testlib.wait_for(lambda: ours.split("=")[1] in served_certificate(app, port, starttls),
                         timeout=15, what=f"our certificate served again on {port}")
    assert app.check_output(f"{APP}-run sh -c 'psql \"$DATABASE_URL\" -tAc \"SELECT 1\"'").strip() == "1"


def test_fail2ban_never_bans_a_balancer():
    """The host baseline on app2 (an app server, no balancer): fail2ban's sshd jail
    runs and leaves loopback and every balancer alone (a balancer banned by an app
    server would take that app server out of every balancer's pool)."""
    host = get_host(APP2)
    ignored = host.check_output("fail2ban-client get sshd ignoreip").split()
    for address in ["127.0.0.0/8", "::1"] + [ip(balancer) for balancer in BALANCERS]:
        assert any(address in line for line in ignored), (address, ignored)
    assert ip(APP2) not in " ".join(ignored)


@pytest.mark.parametrize("name", APPS)
def test_app_servers_trust_forwarded_headers_only_from_the_balancers(name):
    spoofed = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    url = f"http://{ip(name)}:{INSTANCES[name][0]}/whoami"
    # From each balancer: honoured (one hop).
    for balancer in BALANCERS:
        status, body = fetch_from(balancer, url, spoofed)
        answer = json.loads(body)
        assert answer["client"] == "203.0.113.9" and answer["scheme"] == "https"
    # From anyone else that gets through the firewall (here: the app server itself,
    # unless it is a balancer too): ignored.
    if name not in BALANCERS:
        status, body = fetch_from(name, url, spoofed)
        assert status == 200
        answer = json.loads(body)
        assert answer["client"] == ip(name) and answer["scheme"] == "http"


@pytest.mark.parametrize("name", [APP1, APP2, LB, DB])
def test_check_mode_limited_to_one_host_changes_nothing(name):
    """site.yml --check --diff --limit <host>, for each host: nothing to change. The
    others' addresses (the balancer's upstream, the app server's trusted proxies and
    firewall, the database host's clients) come from hosts outside --limit:
    gathered all the same. (The idempotence step is the real run over all four; a
    check of each host alone costs CI less than a check of all and runs limited to
    each.)"""
    result = testlib.run_playbook("site.yml", name, options=["--check", "--diff"])
    assert result.returncode == 0, result.stdout[-3000:]
    assert testlib.recap(result.stdout, name)["changed"] == "0", testlib.changed_tasks(result.stdout)
    others = {LB, *APPS, DB} - {name}
    assert not [line for line in result.stdout.splitlines() if line.split(" ", 1)[0] in others and "ok=" in line]


def test_a_stopped_app_server_is_skipped(via_lb):
    app1 = get_host(APP1)
    app1.check_output(f"systemctl stop {APP}.socket {APP}.service")
    try:
        answers = [via_lb("/whoami") for _ in range(100)]
        assert [a.status for a in answers] == [200] * 100
        assert {a.json()["hostname"] for a in answers} == {APPS[APP2]}
    finally:
        app1.check_output(f"systemctl start {APP}.socket {APP}.service")
    # Back in the pool once its fail_timeout (10 s) has passed.
    testlib.wait_for(lambda: answering(via_lb) == EVERY_INSTANCE, timeout=40,
                     what="every instance answering again")


def test_a_stopped_instance_is_skipped_and_the_others_serve(via_lb):
    app2 = get_host(APP2)
    app2.check_output(f"systemctl stop {APP}@8001.socket {APP}@8001.service")
    try:
        answers = [via_lb("/whoami") for _ in range(100)]
        assert [a.status for a in answers] == [200] * 100
        seen = {(a.json()["hostname"], a.json()["server_port"]) for a in answers}
        assert seen == EVERY_INSTANCE - {(APPS[APP2], "8001")}
    finally:
        app2.check_output(f"systemctl start {APP}@8001.socket {APP}@8001.service")
    testlib.wait_for(lambda: answering(via_lb) == EVERY_INSTANCE, timeout=40,
                     what="every instance answering again")


def test_rolling_update_under_load(via_lb, tmp_path_factory):
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
        # No task ran for the other host (app1 appears as a balancer tasks are
        # delegated to: "[fd-cluster-app2 -> fd-cluster-app1]").
        tasks = batch.split("PLAY RECAP")[0]
        assert f"[{mine}" in tasks and f"[{other}]" not in tasks and f"[{other} ->" not in tasks
        # Marked down, drained, switched, marked up again.
        assert batch.index("Mark the app server in the load balancers") \
            < batch.index("Wait for the requests in flight to finish") \
            < batch.index("Point current at the release") \
            < batch.rindex("Mark the app server in the load balancers")
    # Every instance reloaded onto the new release.
    assert set(instance_versions().values()) == {"2.0.0"}
    for balancer in BALANCERS:
        assert " down;" not in backend_files(balancer)


def test_a_failing_host_stops_the_roll_and_the_rest_keeps_serving(via_lb, tmp_path_factory):
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
    assert testlib.recap(result.stdout, APP1)["failed"] == "1"
    # app2 was never reached; every instance still runs 2.0.0; app1 stays out of
    # the pool of both balancers.
    # (no task ran on it; its name appears only where the first batch read its
    # state in the balancers)
    assert not re.search(r"\[" + re.escape(APP2) + r"(\]| ->)", result.stdout.split("PLAY RECAP")[0])
    assert set(instance_versions().values()) == {"2.0.0"}
    for balancer in BALANCERS:
        assert f"server {ip(APP1)}:8000 max_fails=1 fail_timeout=10s down;" in backend_files(balancer)
    assert {hostname for hostname, _ in answering(via_lb, 20)} == {APPS[APP2]}

    # A roll of app2 alone now would take the last server out of the pool: refused
    # before anything changes, and app2 keeps serving.
    fixed = make_version(tmp_path_factory, "3.0.1")
    result = testlib.run_playbook("playbooks/rolling-deploy.yml", APP2, {"app_source_path": fixed})
    assert result.returncode != 0
    assert "would have no app server left" in result.stdout
    assert "changed=0" in next(l for l in result.stdout.splitlines() if l.startswith(APP2) and "ok=" in l)
    assert {hostname for hostname, _ in answering(via_lb, 20)} == {APPS[APP2]}

    # site.yml on the balancers (app1 is one) brings it back into the pool.
    result = testlib.run_playbook("site.yml", ":".join(BALANCERS))
    assert result.returncode == 0, result.stdout[-3000:]
    for balancer in BALANCERS:
        assert " down;" not in backend_files(balancer)
    testlib.wait_for(lambda: answering(via_lb) == EVERY_INSTANCE, timeout=30,
                     what="every instance in the pool again")


def test_a_roll_failing_at_the_last_host_then_a_fixed_roll_with_a_drain_that_never_ends(via_lb, tmp_path_factory):
    """A release that fails only on app2, the last host of the roll: app1 serves it,
    app2 stays out of the pool on its release, no request fails meanwhile. Then the
    fixed release rolled to app2 while a balancer holds a connection to it open
    (the drain never completes): after rolling_drain_timeout the roll goes on, and
    app2 is back in the pool with the fixed release."""
    before = instance_versions()
    breaks_on_app2 = make_version(tmp_path_factory, "5.0.0", [(
        "import os\n", "import os\nimport socket\n"
        "if socket.gethostname() == 'app2.test':\n    raise ImportError('broken on app2')\n")])
    loop = testlib.LoadLoop(lambda: via_lb("/version"), clients=4, max_requests=100000,
                            max_seconds=300, label=lambda r: r.json()["version"])
    result = testlib.run_under_load(loop, lambda: testlib.run_playbook(
        "playbooks/rolling-deploy.yml", "all", {"app_source_path": breaks_on_app2}), until_seen="5.0.0")
    print("roll failing at the last host:", loop)
    assert result.returncode != 0 and "broken on app2" in result.stdout
    assert loop.failures == [], loop
    assert testlib.recap(result.stdout, APP1)["failed"] == "0"
    assert testlib.recap(result.stdout, APP2)["failed"] == "1"
    versions = instance_versions()
    assert versions[(APP1, "8000")] == "5.0.0"
    assert {versions[(APP2, port)] for port in INSTANCES[APP2]} == {before[(APP2, "8000")]}
    for balancer in BALANCERS:
        assert f"server {ip(APP2)}:8000 max_fails=1 fail_timeout=10s down;" in backend_files(balancer)
    assert {hostname for hostname, _ in answering(via_lb, 20)} == {APPS[APP1]}

    # The fixed release, to app2 (the roll of the hosts left out comes first), while
    # lb keeps a connection to app2's port open: the drain times out, the roll goes on.
    fixed = make_version(tmp_path_factory, "5.0.1")
    testlib.container(LB).exec_run(
        ["python3", "-c", f"import socket, time; s = socket.create_connection(('{ip(APP2)}', 8000)); time.sleep(60)"],
        detach=True)
    testlib.wait_for(lambda: get_host(APP2).run(
        f"ss -Htn state established '( sport = :8000 and dst {ip(LB)} )'").stdout.strip() != "",
        what="lb's connection to app2")
    result = testlib.run_playbook("playbooks/rolling-deploy.yml", APP2,
                                  {"app_source_path": fixed, "rolling_drain_timeout": 3})
    assert result.returncode == 0, result.stdout[-3000:]
    assert "still open after 3 s; deploying anyway" in result.stdout
    assert {instance_versions()[(APP2, port)] for port in INSTANCES[APP2]} == {"5.0.1"}
    for balancer in BALANCERS:
        assert " down;" not in backend_files(balancer)
    testlib.wait_for(lambda: answering(via_lb) == EVERY_INSTANCE, timeout=30,
                     what="every instance in the pool again")


def test_a_balancer_unreachable_at_mark_up_keeps_the_host_out_there_only(via, certs, tmp_path_factory):
    """The controller loses lb while app2, the last host of a roll, is probed: lb is
    renamed (a new connection to it finds no container) and mitogen's process there
    is ended (under mitogen, CI's strategy: unreachable; under linear, a new
    connection per task: failed). lb itself goes on serving. Marking app2 up fails
    on lb alone, so the roll fails on app2 naming lb; app1, the other balancer, has
    app2 up and reloaded; lb keeps serving from app1 (app2 still down there), and
    no request through it fails. The roll of app2 again, lb back, puts it back."""
    import subprocess

    lb_ip = ip(LB)
    release = make_version(tmp_path_factory, "6.0.0")
    loop = testlib.LoadLoop(lambda: testlib.request(lb_ip, "/whoami", cafile=certs[LB], server_name=NAME),
                            clients=4, max_requests=100000, max_seconds=300)
    cmd, env = testlib.playbook_command("playbooks/rolling-deploy.yml", "all", {"app_source_path": release})
    lb, lines, probes = testlib.container(LB), [], 0
    try:
        with loop:
            testlib.wait_for(lambda: loop.sent > 200, what="load before the roll")
            run = subprocess.Popen(cmd, cwd=testlib.REPO, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
            for line in run.stdout:
                lines.append(line)
                if line.startswith("TASK [wsgi : Check the WSGI server answers"):
                    probes += 1
                    if probes == 2:  # app2's probe: it was marked down everywhere
                        lb.rename(f"{LB}-away")
                        lb.exec_run(["pkill", "-f", "mitogen:"])
            run.wait(timeout=600)
            sent = loop.sent
            testlib.wait_for(lambda: loop.sent > sent + 200, what="load after the roll")
    finally:
        lb.reload()
        if lb.name != LB:
            lb.rename(LB)
    output = "".join(lines)
    print("balancer lost at mark-up:", loop)
    assert probes == 2 and run.returncode != 0, output[-3000:]
    assert loop.failures == [], loop
    if os.environ.get("ANSIBLE_STRATEGY") == "mitogen_linear":
        assert "UNREACHABLE!" in output, output[-3000:]  # the case of a balancer lost over SSH
    assert f"{APP2} could not be marked up in the load balancer(s) {LB} (see" in " ".join(output.split()), \
        output[-3000:]
    assert testlib.recap(output, APP1)["failed"] == "0"
    assert testlib.recap(output, APP2)["failed"] == "1"
    assert {version for version in instance_versions().values()} == {"6.0.0"}
    assert f"server {ip(APP2)}:8000 max_fails=1 fail_timeout=10s down;" in backend_files(LB)
    assert " down;" not in backend_files(APP1)
    assert answering(via(APP1), 30) == EVERY_INSTANCE
    assert {hostname for hostname, _ in answering(via(LB), 20)} == {APPS[APP1]}

    # lb reachable again: the roll of app2 again puts it back there.
    result = testlib.run_playbook("playbooks/rolling-deploy.yml", APP2, {"app_source_path": release})
    assert result.returncode == 0, result.stdout[-3000:]
    for balancer in BALANCERS:
        assert " down;" not in backend_files(balancer)
    testlib.wait_for(lambda: answering(via(LB)) == EVERY_INSTANCE, timeout=30,
                     what="every instance in lb's pool again")


def test_a_batch_as_large_as_the_pool_is_refused(via_lb, tmp_path_factory):
    before = instance_versions()
    result = testlib.run_playbook("playbooks/rolling-deploy.yml", "all",
                                  {"app_source_path": make_version(tmp_path_factory, "4.0.0"), "rolling_serial": 2})
    assert result.returncode != 0
    assert "rolling_serial must be a number of hosts from 1 to one less than the app" in result.stdout
    for name in APPS:
        assert testlib.recap(result.stdout, name)["changed"] == "0"
    assert instance_versions() == before


@pytest.mark.parametrize("name", [LB, APP1, APP2])
def test_no_nginx_check_copies_left_in_tmp(name):
    """Every validated nginx write (the converges, the rolls' mark-down and mark-up on
    both balancers) copies /etc/nginx, TLS keys included, into /tmp/nginx-check.*:
    the check removes its copy each time."""
    left = get_host(name).check_output("find /tmp -maxdepth 1 -name 'nginx-check.*'")
    assert left == "", left
