"""Runs of site.yml against a converged host: bad input, graceful reload, check mode."""

import pytest
import testlib

testinfra_hosts = ["ansible://fd-default-debian12"]

APP = "hello"
LIMIT = "fd-default-debian12"


def _recap(output):
    line = next(l for l in output.splitlines() if l.startswith(LIMIT) and "ok=" in l)
    return dict(part.split("=") for part in line.split(":", 1)[1].split())


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("wsgi_workers", "many", "wsgi_workers"),
        ("nginx_tls_mode", "sometimes", "nginx_tls_mode"),
        ("app_proxy_count", [1], "app_proxy_count"),
        ("nginx_server_names", ["bad name!"], "nginx_server_names"),
        ("wsgi_server", "bjoern", "wsgi_server"),
        ("flaskdeploy_profile", "cloud", "flaskdeploy_profile"),
        # A mode whose required files are missing.
        ("nginx_tls_mode", "files", "nginx_tls_certificate_src"),
    ],
)
def test_bad_variable_fails_before_any_change(host, variable, value, message):
    conf = host.file(f"/etc/{APP}/gunicorn.conf.py").content_string
    result = testlib.run_playbook("site.yml", LIMIT, {variable: value})
    assert result.returncode != 0
    assert message in result.stdout
    recap = _recap(result.stdout)
    assert recap["changed"] == "0"
    assert recap["failed"] == "1"
    assert host.file(f"/etc/{APP}/gunicorn.conf.py").content_string == conf


def test_config_change_reloads_without_restart(host, https):
    master = testlib.main_pid(host, f"{APP}.service")
    workers = testlib.child_pids(host, master)
    try:
        result = testlib.run_playbook("site.yml", LIMIT, {"wsgi_timeout": 31})
        assert result.returncode == 0, result.stdout[-3000:]
        assert "RUNNING HANDLER [wsgi : Reload WSGI server]" in result.stdout
        assert "timeout = 31" in host.file(f"/etc/{APP}/gunicorn.conf.py").content_string
        # Same master (no restart), new workers (the HUP re-forked them).
        assert testlib.main_pid(host, f"{APP}.service") == master
        new_workers = testlib.wait_for(
            lambda: (pids := testlib.child_pids(host, master)) and not set(pids) & set(workers)
            and pids,
            what="workers replaced after HUP",
        )
        assert new_workers
        assert https("/healthz").status == 200
    finally:
        result = testlib.run_playbook("site.yml", LIMIT)
        assert result.returncode == 0, result.stdout[-3000:]


def test_check_mode_on_converged_host_reports_no_changes():
    result = testlib.run_playbook("site.yml", LIMIT, options=["--check", "--diff"])
    assert result.returncode == 0, result.stdout[-3000:]
    assert _recap(result.stdout)["changed"] == "0", testlib.changed_tasks(result.stdout)
