"""A real-shaped Flask app (molecule/apps/noteboard), deployed with names, paths and
commands only: its factory as app_wsgi_module, its init command as the migration,
its Procfile's worker, a timer. Everything is checked through nginx over HTTPS, as
a browser would reach it behind a port mapping (nginx_https_public_port 8443, as
the demo's), and the tests run in file order on one converged server.
"""

import json
import shutil
import time
from pathlib import Path

import pytest
import testlib

testinfra_hosts = ["ansible://fd-apps-debian13"]

APP = "noteboard"
LIMIT = "fd-apps-debian13"
ROOT = f"/srv/{APP}"
SOURCE = Path(__file__).resolve().parents[1] / "noteboard"
# The name and port clients use: the port mapping in front of nginx's 443.
PUBLIC = "apps.test:8443"
ORIGIN = f"https://{PUBLIC}"

RELEASES = {}
# The processes role's step that writes the units and start scripts (skipped when it
# finds them as wanted).
UNITS_TASK = "processes : Install the units and start scripts, and remove those no longer wanted"


def enqueue(web, seconds):
    resp = testlib.post_form(web, "/jobs", {"seconds": seconds})
    assert resp.status == 201, resp.text
    return resp.json()["id"]


def job(web, job_id):
    return web(f"/jobs/{job_id}").json()


def wait_job(web, job_id, state="done", timeout=60):
    return testlib.wait_for(lambda: job(web, job_id)["state"] == state and job(web, job_id),
                            timeout=timeout, what=f"job {job_id} {state}")


def current(host):
    return host.file(f"{ROOT}/current").linked_to.rsplit("/", 1)[1]


def deploy(path, **extra):
    return testlib.run_playbook("playbooks/deploy.yml", LIMIT, {"app_source_path": str(path), **extra})


def version_copy(tmp_path_factory, version):
    target = tmp_path_factory.mktemp(f"noteboard-{version}") / "noteboard"
    shutil.copytree(SOURCE, target, ignore=shutil.ignore_patterns("__pycache__"))
    init = target / "noteboard" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "1.0"', f'__version__ = "{version}"'))
    return target


def ticks(web):
    return web("/ticks").json()["ticks"]


def test_the_app_has_no_code_for_flaskdeploy(host, hostvars):
    # What the scenario sets for it: names, paths and commands.
    assert {k for k in hostvars if k.startswith(("app_", "processes_"))} == {
        "app_name", "app_source_path", "app_wsgi_module", "app_static_dir", "app_migrate_command",
        "processes_timers"}
    code = "".join(p.read_text() for p in SOURCE.rglob("*.py"))
    assert "ProxyFix" not in code and "healthz" not in code and "flaskdeploy" not in code
    RELEASES["1.0"] = current(host)


def test_check_mode_on_the_converged_server_changes_nothing(host):
    result = testlib.run_playbook("site.yml", LIMIT, options=["--check", "--diff"])
    assert result.returncode == 0, result.stdout[-3000:]
    assert testlib.recap(result.stdout, LIMIT)["changed"] == "0", testlib.changed_tasks(result.stdout)


def test_external_urls_scheme_and_client_address_through_nginx(web, addresses):
    _, controller_ip = addresses
    body = web("/whoami").json()
    assert body["client"] == controller_ip
    assert body["scheme"] == "https"
    # The public name and port, as url_for(_external=True) builds them.
    assert body["url"] == f"{ORIGIN}/whoami"
    assert web("/static/style.css").text.startswith("body")


def notes(web):
    return web("/notes.json").json()["notes"]


def test_the_csrf_protected_form_writes_to_the_instance_database(host, web):
    before = notes(web)  # empty on a new server; what earlier runs of the tests wrote
    resp = testlib.post_form(web, "/", {"body": "first note"})
    assert resp.status == 302, resp.text
    assert resp.header("location") == "/"
    assert notes(web) == before + [{"body": "first note", "version": "1.0"}]
    database = host.file(f"/var/lib/{APP}/shared/instance/noteboard.sqlite")
    assert database.exists and database.user == APP
    # app_shared_paths' default: instance/ in the release is a link to the data
    # directory, writable by the app user only (the tests below see the data survive
    # a deploy and a rollback).
    link = host.file(f"/srv/{APP}/current/instance")
    assert link.is_symlink and link.linked_to == f"/var/lib/{APP}/shared/instance"
    shared = host.file(f"/var/lib/{APP}/shared/instance")
    assert (shared.user, shared.group, shared.mode) == (APP, APP, 0o750)


@pytest.mark.parametrize("token, referer, reason", [
    (False, ORIGIN + "/", "The CSRF token is missing."),
    (True, "https://apps.test/", "The referrer does not match the host."),
    (True, None, "The referrer header is missing."),
])
def test_the_form_refuses_requests_without_token_or_from_another_origin(web, token, referer, reason):
    fields = {"body": "forged"}
    if token:
        fields["csrf_token"] = testlib.csrf_token(web)
    headers = {"Referer": referer} if referer else {}
    resp = web("/", method="POST", form=fields, headers=headers)
    assert resp.status == 400 and reason in resp.text
    assert "forged" not in json.dumps(notes(web))


def test_the_procfile_worker_processes_a_job_a_request_enqueued(host, web):
    job_id = enqueue(web, 0)
    done = wait_job(web, job_id)
    user, _, where = done["worker"].partition(":")
    assert user == APP and where.endswith("@" + RELEASES["1.0"])
    # Only the Procfile's worker: its web line is the WSGI server's, release the migration's.
    # (besides the app role's boot check of the release)
    files = set(host.check_output(f"cd /etc/systemd/system && ls -d {APP}-*").split()) - {f"{APP}-release-boot.service"}
    assert sorted(files) == [f"{APP}-{job}.{kind}" for job in ("fails", "hangs", "tick") for kind in ("service", "timer")
                             ] + [f"{APP}-worker@.service"]
    assert host.service(f"{APP}-worker@1.service").is_enabled
    testlib.assert_sandboxed(host, f"{APP}-worker@1.service", f"/var/lib/{APP}")


def test_the_timer_runs_as_the_app_and_never_twice_at_once(host, web):
    # A 3 s tick every 2 s: systemd starts none while one runs.
    done = testlib.wait_for(lambda: len([t for t in ticks(web) if t["finished"]]) >= 3 and ticks(web),
                            timeout=60, what="three ticks")
    finished = [t for t in done if t["finished"]]
    assert {t["user"] for t in finished} == {APP}
    for before, after in zip(done, done[1:]):
        assert before["finished"] is not None and after["started"] >= before["finished"], (before, after)
    assert "tick" in host.check_output(f"journalctl -u {APP}-tick.service --no-pager -n 20")


SINK = "fd-alert-sink"
# What alert_url points at: a receiver on the server's loopback keeping each POST.
SINK_CODE = """
import http.server, json
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with open("/var/lib/fd-alert-sink/posts", "a") as f:
            f.write(json.dumps({"path": self.path, "body": body}) + "\\n")
        self.send_response(204)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", 9099), Hook).serve_forever()
"""


def test_a_job_that_fails_or_outlasts_its_timeout_alerts_the_operator(host):
    """The scenario's jobs `fails` (exit 3) and `hangs` (sleep 600, timeout 3): each
    ends failed, the hung one stopped at its timeout (RuntimeMaxSec= would never stop
    a oneshot), and each failure runs alert_command and POSTs to alert_url once."""
    import shlex

    host.run(f"systemctl stop {SINK}; systemctl reset-failed {SINK}; rm -f /var/lib/{SINK}/posts "
             f"/var/lib/flaskdeploy-alert/alerts.log")
    host.check_output(f"systemd-run --unit={SINK} -p StateDirectory={SINK} /usr/bin/python3 -c {shlex.quote(SINK_CODE)}")
    testlib.wait_for(lambda: host.socket("tcp://127.0.0.1:9099").is_listening, what="the alert receiver")
    config = host.file("/etc/flaskdeploy/alert.json")
    assert (config.user, config.mode) == ("root", 0o600)
    assert "s3cret-token" not in host.check_output("cat /etc/systemd/system/flaskdeploy-alert@.service")

    started = time.time()
    host.check_output(f"systemctl start --no-block {APP}-fails.service {APP}-hangs.service")

    def result(unit):
        return host.check_output(f"systemctl show -p Result --value {unit}")

    testlib.wait_for(lambda: result(f"{APP}-hangs.service") == "timeout", timeout=30, what="the hung job stopped")
    assert 3 <= time.time() - started < 20
    assert result(f"{APP}-fails.service") == "exit-code"
    log = host.file("/var/lib/flaskdeploy-alert/alerts.log")
    testlib.wait_for(lambda: log.exists and len(log.content_string.splitlines()) == 2,
                     timeout=30, what="a line of alert_command per failure")
    # unit, result, status (the exit status, or the signal that stopped it)
    alerts = sorted(line.split() for line in log.content_string.splitlines())
    assert alerts[0] == [f"{APP}-fails.service", "exit-code", "3"], alerts
    assert alerts[1][:2] == [f"{APP}-hangs.service", "timeout"], alerts
    testlib.wait_for(lambda: host.file(f"/var/lib/{SINK}/posts").exists
                     and len(host.file(f"/var/lib/{SINK}/posts").content_string.splitlines()) == 2,
                     timeout=30, what="a POST per failure")
    posts = [json.loads(line) for line in host.file(f"/var/lib/{SINK}/posts").content_string.splitlines()]
    assert {p["path"] for p in posts} == {"/hook/s3cret-token"}
    assert {(p["body"]["unit"], p["body"]["result"]) for p in posts} == {
        (f"{APP}-fails.service", "exit-code"), (f"{APP}-hangs.service", "timeout")}
    assert all(p["body"]["host"] and p["body"]["unit"] in p["body"]["text"] for p in posts)
    for unit in (f"{APP}-fails.service", f"{APP}-hangs.service"):
        assert result(f"flaskdeploy-alert@{unit}.service") == "success"
    # Not stuck: the hung job runs again at its next start.
    host.check_output(f"systemctl start --no-block {APP}-hangs.service")
    testlib.wait_for(lambda: host.check_output(f"systemctl show -p ActiveState --value {APP}-hangs.service")
                     == "activating", timeout=10, what="the job running again")
    host.run(f"systemctl stop {APP}-hangs.service {SINK}; systemctl reset-failed")


def test_one_off_commands_run_as_the_app_in_its_context(host, web):
    count = len(notes(web))
    out = host.check_output(f"/usr/local/sbin/{APP}-run flask stats")
    assert f"user={APP} notes={count} release={RELEASES['1.0']}" in out
    result = testlib.run_playbook("playbooks/run.yml", LIMIT, {"app_run": "flask stats"})
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"user={APP} notes={count}" in result.stdout


# redis_tls with a CA the user gives (service_tls_ca_certificate, _private_key).
SITE_CA = "/etc/ssl/flaskdeploy/ca.crt"
GIVEN_CA = Path(__file__).resolve().parents[1] / "tls" / "test-ca.crt"


def test_redis_over_tls_with_a_ca_the_user_gives(host):
    """Redis speaks TLS alone on its port with a certificate signed by the CA the user
    gave; the app's REDIS_URL (rediss://, the CA named) logs in from its one-off
    command; plain connections and a client that trusts another CA get nowhere. The
    given CA's key and the host's stay root's. (The run also started Redis on Debian
    13 despite the package's own failed start: redis_private_users auto.)"""
    env = host.file(f"/etc/{APP}/app.env").content_string
    assert f"rediss://{APP}:" in env, env
    assert f"@127.0.0.1:6379/0?ssl_cert_reqs=required&ssl_ca_certs={SITE_CA}" in env
    assert host.file(SITE_CA).content_string.strip() == GIVEN_CA.read_text().strip()
    issuer = host.check_output(
        f"openssl s_client -connect 127.0.0.1:6379 -CAfile {SITE_CA} -verify_ip 127.0.0.1 -verify_return_error"
        " </dev/null 2>/dev/null | openssl x509 -noout -issuer")
    assert "flaskdeploy apps scenario test CA" in issuer, issuer
    redis_cli = f"redis-cli --tls --cacert {SITE_CA} -u \"$REDIS_URL\" --no-auth-warning"
    assert host.check_output(f"{APP}-run sh -c '{redis_cli} ping'").strip() == "PONG"
    # (As root, the URL from the environment file: the same client elsewhere.)
    url = next(line.split("=", 1)[1].strip("'\"") for line in env.splitlines() if line.startswith("REDIS_URL="))
    plain = host.run(f"redis-cli -u '{url.replace('rediss://', 'redis://')}' --no-auth-warning ping")
    assert "PONG" not in plain.stdout, plain
    host.check_output("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1"
                      " -subj /CN=other -keyout /tmp/other-ca.key -out /tmp/other-ca.crt 2>/dev/null")
    other = host.run(f"redis-cli --tls --cacert /tmp/other-ca.crt -u '{url}' --no-auth-warning ping")
    assert "PONG" not in other.stdout and "certificate verify failed" in other.stdout + other.stderr, other
    # redis-py (Debian's python3-redis, 6.1 here), as an app's RQ would take the URL.
    host.check_output("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-redis >/dev/null")
    assert host.check_output(f"python3 -c 'import redis; print(redis.from_url(\"{url}\").ping())'") == "True"
    assert host.file("/etc/flaskdeploy/tls").mode == 0o700
    for path in ("/etc/flaskdeploy/tls/ca.key", "/etc/flaskdeploy/tls/server.key"):
        key = host.file(path)
        assert (key.user, key.group, key.mode) == ("root", "root", 0o600), path


def test_a_deploy_lets_the_job_in_hand_and_the_tick_in_flight_finish(host, web, tmp_path_factory):
    """The worker restarts onto the new release after the switch, once the job it had
    (longer than the deploy) is done; ticks running meanwhile finish on their release."""
    path = version_copy(tmp_path_factory, "2.0")
    written = notes(web)
    job_id = enqueue(web, 40)
    wait_job(web, job_id, "running", timeout=10)
    worker = testlib.main_pid(host, f"{APP}-worker@1.service")
    started = time.time()
    result = deploy(path)
    assert result.returncode == 0, result.stdout[-3000:]
    returned = time.time()
    RELEASES["2.0"] = current(host)
    long_job = job(web, job_id)
    assert long_job["state"] == "done", long_job
    assert long_job["finished"] - long_job["started"] >= 40
    assert long_job["worker"].endswith("@" + RELEASES["1.0"])
    # The deploy waited for it: the restart came after the job.
    assert started < long_job["finished"] <= returned
    assert testlib.main_pid(host, f"{APP}-worker@1.service") != worker
    # The units and start scripts were found as wanted: restarted, not rewritten.
    assert testlib.task_status(result.stdout, UNITS_TASK) == "skipping"
    # The new worker runs the new release; the data is still there.
    assert wait_job(web, enqueue(web, 0))["worker"].endswith("@" + RELEASES["2.0"])
    assert web("/notes.json").json() == {"notes": written, "version": "2.0", "release": RELEASES["2.0"]}
    # No tick was cut short: every one but a running last one finished.
    all_ticks = ticks(web)
    assert all(t["finished"] for t in all_ticks[:-1]), all_ticks
    assert {t["release"] for t in all_ticks} >= {RELEASES["1.0"]}
    testlib.wait_for(lambda: ticks(web)[-1]["release"] == RELEASES["2.0"] and ticks(web)[-1]["finished"],
                     timeout=30, what="a tick of the new release")


def test_a_rollback_keeps_the_data_and_moves_the_worker_back(host, web):
    assert testlib.post_form(web, "/", {"body": "second note"}).status == 302
    written = notes(web)
    assert written[-1] == {"body": "second note", "version": "2.0"}
    result = testlib.run_playbook("playbooks/rollback.yml", LIMIT)
    assert result.returncode == 0, result.stdout[-3000:]
    body = web("/notes.json").json()
    assert body["version"] == "1.0" and body["release"] == RELEASES["1.0"]
    assert body["notes"] == written
    assert wait_job(web, enqueue(web, 0))["worker"].endswith("@" + RELEASES["1.0"])


def environ(host, unit):
    """The environment a unit's main process was started with."""
    return host.check_output(f"tr '\\000' '\\n' < /proc/{testlib.main_pid(host, unit)}/environ").splitlines()


def test_a_run_cut_after_an_environment_change_is_finished_by_the_next(host, web):
    """site.yml with a new app_env, killed once the environment file and its digest
    were written, before any restart (as a failed health gate would end it): the web
    service and the worker still run with the environment before. The next deploy,
    which writes no environment and has no release to switch, restarts both onto it."""
    units = (f"{APP}.service", f"{APP}-worker@1.service")
    testlib.playbook_killed_at("site.yml", LIMIT, {"app_env": {"NOTEBOARD_MOTTO": "rotated"}},
                               "app : Take the deploy lock (one run at a time)")
    assert 'NOTEBOARD_MOTTO="rotated"' in host.file(f"/etc/{APP}/app.env").content_string
    assert not [u for u in units if "NOTEBOARD_MOTTO=rotated" in environ(host, u)]
    result = deploy(SOURCE)
    assert result.returncode == 0, result.stdout[-3000:]
    assert testlib.task_status(result.stdout, testlib.SWITCH_TASK) in (None, "skipping")
    # (named, so that a renamed task cannot make the line above pass unseen)
    assert testlib.task_status(result.stdout, "app : Switch to the release") == "skipping"
    assert testlib.task_status(result.stdout, "wsgi : Restart them onto the app's environment") == "changed"
    assert [u for u in units if "NOTEBOARD_MOTTO=rotated" in environ(host, u)] == list(units)
    assert web("/notes.json").json()["release"] == RELEASES["1.0"]
    assert wait_job(web, enqueue(web, 0))["worker"].endswith("@" + RELEASES["1.0"])


def test_a_run_cut_after_the_probe_still_moves_the_worker(host, web, tmp_path_factory):
    """A deploy killed once the new release answered its probe, before the processes
    restarted: the worker still runs the release before. The next run has nothing to
    switch, yet restarts the worker onto the current release. (That a run restarts
    nothing when nothing changed: the idempotence step.) The web service runs an
    older WSGI entry point meanwhile (as an older flaskdeploy left it): the run
    installs the role's and, by the digest that covers it, restarts the web service,
    whose environment files did not change."""
    path = version_copy(tmp_path_factory, "3.0")
    testlib.playbook_killed_at("playbooks/deploy.yml", LIMIT, {"app_source_path": str(path)},
                               "processes : Read the app's Procfile and its processes on the host")
    RELEASES["3.0"] = current(host)
    assert web("/notes.json").json()["version"] == "3.0"
    assert wait_job(web, enqueue(web, 0))["worker"].endswith("@" + RELEASES["1.0"])
    restart = "processes : Restart the processes onto the current release"
    # The web service as flaskdeploy 0.4.0 left it: started with an older entry point,
    # and with the digest of the environment files alone (which is all a digest that
    # left the entry point out would see now: the web service would not restart).
    entry = "/usr/local/lib/flaskdeploy/flaskdeploy_wsgi.py"
    host.run_expect([0], f"echo '# an older entry point' >> {entry} && printf 'FLASKDEPLOY_ENV_DIGEST=%s\\n'"
                         f" $(cat /etc/{APP}/app.env /etc/{APP}/secret.env | sha256sum | cut -d ' ' -f 1)"
                         f" > /etc/{APP}/env.digest && systemctl restart {APP}.service")
    web_pid = testlib.main_pid(host, f"{APP}.service")
    result = deploy(path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert testlib.task_status(result.stdout, testlib.SWITCH_TASK) in (None, "skipping")
    # (named, so that a renamed task cannot make the line above pass unseen)
    assert testlib.task_status(result.stdout, "app : Switch to the release") == "skipping"
    assert testlib.task_status(result.stdout, restart) == "changed"
    assert testlib.task_status(result.stdout, "app : Install the WSGI entry point") == "changed"
    assert testlib.task_status(result.stdout, "wsgi : Restart them onto the app's environment") == "changed"
    assert testlib.main_pid(host, f"{APP}.service") != web_pid
    assert wait_job(web, enqueue(web, 0))["worker"].endswith("@" + RELEASES["3.0"])


def test_a_deploy_puts_back_a_process_and_a_start_script_changed_by_hand(host, web):
    """The processes role writes no unit it finds as wanted (above); a worker stopped
    and disabled by hand and a start script edited are found, and put back."""
    unit, script = f"{APP}-worker@1.service", f"/etc/{APP}/processes/worker"
    before = host.file(script).content_string
    host.check_output(f"systemctl disable --now {unit} && echo '# edited' >> {script}")
    result = deploy(SOURCE)
    assert result.returncode == 0, result.stdout[-3000:]
    assert testlib.task_status(result.stdout, "processes : Write the start scripts") == "changed"
    assert host.service(unit).is_running and host.service(unit).is_enabled
    assert host.file(script).content_string == before
    assert wait_job(web, enqueue(web, 0))["worker"].endswith("@" + current(host))


def test_instances_for_a_process_the_procfile_lacks_fail_naming_it(host, web):
    """processes_instances naming a process that is neither in processes_commands nor
    in the Procfile fails the run at the processes' check, naming it; nothing changes."""
    worker = testlib.main_pid(host, f"{APP}-worker@1.service")
    result = testlib.run_playbook("playbooks/deploy.yml", LIMIT,
                                  {"app_source_path": str(SOURCE), "processes_instances": {"worker": 1, "wroker": 2}})
    assert result.returncode != 0
    assert testlib.failed_task(result.stdout) == "processes : Check the Procfile and the processes it names", \
        result.stdout[-3000:]
    assert "processes_instances names processes that are not in processes_commands or the Procfile: wroker" \
        in " ".join(result.stdout.split()), result.stdout[-3000:]
    assert testlib.main_pid(host, f"{APP}-worker@1.service") == worker
    assert not host.file(f"/etc/systemd/system/{APP}-wroker@.service").exists


def test_instances_scale_and_a_dropped_process_is_removed(host, web):
    result = testlib.run_playbook("playbooks/deploy.yml", LIMIT,
                                  {"app_source_path": str(SOURCE), "processes_instances": {"worker": 2}})
    assert result.returncode == 0, result.stdout[-3000:]
    for unit in (f"{APP}-worker@1.service", f"{APP}-worker@2.service"):
        assert host.service(unit).is_running and host.service(unit).is_enabled
    # Both take jobs, once both are ready (the second has just started).
    for unit in (f"{APP}-worker@1.service", f"{APP}-worker@2.service"):
        pid = testlib.main_pid(host, unit)
        testlib.wait_for(lambda: f":{pid}@" in host.check_output(f"journalctl -u {unit} --no-pager -n 5"),
                         timeout=60, what=f"{unit} ready")
    ids = [enqueue(web, 1) for _ in range(4)]
    workers = {wait_job(web, i)["worker"].split("@")[0] for i in ids}
    assert len(workers) == 2, workers

    result = testlib.run_playbook("playbooks/deploy.yml", LIMIT,
                                  {"app_source_path": str(SOURCE), "processes_commands": {}})
    assert result.returncode == 0, result.stdout[-3000:]
    assert host.check_output(f"systemctl list-units --plain --no-legend '{APP}-worker*'") == ""
    assert not host.file(f"/etc/systemd/system/{APP}-worker@.service").exists
    assert not host.file(f"/etc/{APP}/processes/worker").exists
    assert not host.file(f"/etc/systemd/system/multi-user.target.wants/{APP}-worker@1.service").exists
    # The timer is not a process: it stays.
    assert host.service(f"{APP}-tick.timer").is_running
