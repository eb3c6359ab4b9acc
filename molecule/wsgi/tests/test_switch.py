"""Moving a host between WSGI servers and profiles leaves nothing of the old setup running.

waitress12 starts as waitress alone on port 80 (profile wsgi); it is switched to
three gunicorn instances behind nginx with HTTPS, then back to one waitress.
"""

import testlib

testinfra_hosts = ["ansible://fd-wsgi-waitress12"]

APP = "hello"
LIMIT = "fd-wsgi-waitress12"


def _ps(host):
    return [p for p in host.check_output("ps -eo args=").splitlines() if "ps -eo" not in p]


def _whoami_pid_cmdline(host, resp):
    return host.file(f"/proc/{resp.json()['pid']}/cmdline").content_string


def test_switch_waitress_wsgi_to_gunicorn_https_and_back(host, addresses, request):
    server_ip, controller_ip = addresses
    try:
        result = testlib.run_playbook(
            "site.yml", LIMIT, {"wsgi_server": "gunicorn", "flaskdeploy_profile": "https",
                                "wsgi_instances": 3})
        assert result.returncode == 0, result.stdout[-3000:]

        assert host.service("nginx").is_running
        assert host.service("nginx").is_enabled
        for i in (1, 2, 3):
            assert host.service(f"{APP}@{i}.service").is_running
            listen = host.check_output(f"systemctl show -p Listen --value {APP}@{i}.socket")
            assert listen.startswith(f"/run/{APP}/wsgi-{i}.sock ")
        assert not host.service(f"{APP}.socket").is_running
        assert not host.file(f"/etc/systemd/system/{APP}.socket").exists
        assert not [p for p in _ps(host) if "waitress_serve.py" in p]
        assert not host.file(f"/etc/{APP}/waitress_serve.py").exists
        assert host.run(f"/srv/{APP}/current/venv/bin/python -c 'import waitress'").rc != 0
        # The certificate exists from now on (the https fixture reads it).
        https = request.getfixturevalue("https")
        resp = https("/whoami")
        assert resp.header("server") == "nginx"
        assert resp.json()["scheme"] == "https"
        assert resp.json()["client"] == controller_ip
        assert "bin/gunicorn" in _whoami_pid_cmdline(host, resp)
        redirect = testlib.request(server_ip, "/", scheme="http", server_name="waitress12.test")
        assert redirect.status == 301
        assert redirect.header("location") == "https://waitress12.test/"
    finally:
        result = testlib.run_playbook("site.yml", LIMIT)
        assert result.returncode == 0, result.stdout[-3000:]

    assert not host.service("nginx").is_running
    assert not host.service("nginx").is_enabled
    assert host.service(f"{APP}.service").is_running
    assert host.check_output(f"systemctl list-units --plain --no-legend '{APP}@*'") == ""
    assert not host.file(f"/etc/systemd/system/{APP}@.service").exists
    assert not [p for p in _ps(host) if "bin/gunicorn" in p]
    assert not host.file(f"/etc/{APP}/gunicorn.conf.py").exists
    assert not host.file(f"/srv/{APP}/current/venv/bin/gunicorn").exists
    resp = testlib.request(server_ip, "/whoami", scheme="http")
    assert resp.status == 200
    assert resp.header("server") == "waitress"
    assert "waitress_serve.py" in _whoami_pid_cmdline(host, resp)
    assert resp.json()["client"] == controller_ip
