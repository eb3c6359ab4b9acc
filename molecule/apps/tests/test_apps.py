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
    assert sorted(files) == [f"{APP}-tick.service", f"{APP}-tick.timer", f"{APP}-worker@.service"]
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


def test_one_off_commands_run_as_the_app_in_its_context(host, web):
    count = len(notes(web))
    out = host.check_output(f"/usr/local/sbin/{APP}-run flask stats")
    assert f"user={APP} notes={count} release={RELEASES['1.0']}" in out
    result = testlib.run_playbook("playbooks/run.yml", LIMIT, {"app_run": "flask stats"})
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"user={APP} notes={count}" in result.stdout


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
