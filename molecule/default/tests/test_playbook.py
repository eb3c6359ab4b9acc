"""Runs of site.yml against a converged host: bad input, graceful reload, check mode."""

import json
import os
import shlex
import socket
import time
from pathlib import Path

import pytest
import testlib

testinfra_hosts = ["ansible://fd-default-debian12"]

APP = "hello"
LIMIT = "fd-default-debian12"

# Each with the text its failure must name.
BAD_VARIABLES = [
    ({"wsgi_workers": "many"}, "wsgi_workers"),
    ({"nginx_tls_mode": "sometimes"}, "nginx_tls_mode"),
    ({"app_proxy_count": [1]}, "app_proxy_count"),
    ({"nginx_server_names": ["bad name!"]}, "nginx_server_names"),
    ({"wsgi_server": "bjoern"}, "wsgi_server"),
    ({"flaskdeploy_profile": "cloud"}, "flaskdeploy_profile"),
    ({"nginx_tls_profile": "old"}, "nginx_tls_profile"),
    ({"nginx_https_port": 70000}, "nginx_https_port"),
    ({"wsgi_instances": 0}, "wsgi_instances"),
    # Waitress cannot hand a connection over to the app; a time nginx would refuse.
    ({"wsgi_long_lived": True, "wsgi_server": "waitress"}, "wsgi_long_lived (WebSockets, streams) needs"),
    ({"wsgi_long_lived": True, "wsgi_gunicorn_worker_class": "sync"}, "not sync"),
    ({"nginx_websocket_timeout": "forever"}, "nginx_websocket_timeout must be an nginx time"),
    # Debian 12's nginx 1.22 is not built with HTTP/3.
    ({"nginx_http3": True}, "nginx_http3 is set, but this host's nginx (nginx/1.22"),
    ({"nginx_tls_mode": "acme", "nginx_acme_directory": "http://insecure.example/dir"},
     "nginx_acme_directory"),
    # Values of the right type that would harm the server: a static prefix nginx's
    # alias would turn into a traversal, the system's own names, broken env keys.
    ({"app_static_url": "/static"}, "app_static_url must start and end with '/'"),
    ({"app_name": "www-data"}, "app_name must be"),
    ({"app_name": "nginx"}, "app_name must be"),
    ({"app_user": "www-data"}, "app_user 'www-data' is an existing account of this server"),
    ({"app_env": {"BAD KEY": "x"}}, "app_env keys must be"),
    ({"app_env": {"A\nB": "x", "OK": "y"}}, "app_env keys must be"),
    # A shared path inside another resolves into the shared directory itself once the
    # outer one is a link; a job named after the release's boot check would replace it.
    ({"app_shared_paths": ["instance", "instance/uploads"]}, "app_shared_paths must be"),
    ({"app_shared_paths": [".sealed"]}, "app_shared_paths must be"),
    ({"processes_timers": {"release-boot": {"command": "true", "on_calendar": "daily"}}},
     "processes_commands and processes_timers may not name"),
    ({"app_name": "flaskdeploy"}, "app_name must be"),
    # pip reads requirements files only; a uv release is a version.
    ({"app_venv_installer": "pip", "app_dependencies": "uv.lock"}, "app_dependencies uv.lock needs app_venv_installer uv"),
    ({"app_uv_version": "latest"}, "app_uv_version must be a release such as"),
    ({"app_dependencies": "poetry.lock"}, "app_dependencies"),
    # A mode whose required files are missing, or not where they are said to be.
    ({"nginx_tls_mode": "files"}, "nginx_tls_certificate_src"),
    ({"nginx_tls_mode": "files", "nginx_tls_certificate_src": "/no/such/cert.pem",
      "nginx_tls_key_src": "/no/such/key.pem"}, "nginx_tls_certificate_src: no such file"),
]
WATCHED = [f"/etc/{APP}/gunicorn.conf.py", f"/etc/nginx/conf.d/{APP}.conf"]


@pytest.fixture(scope="module")
def bad_variable_runs(host, tmp_path_factory):
    """Every bad value in one run of site.yml (they fail before changing anything):
    each case is a host of its own in a second inventory, another name for this
    server's container with its host variables and the bad value, as a user's
    host_vars would give it (one run instead of one a case spares CI minutes). The
    run's JSON output, and the watched files' contents before and after it."""
    import yaml

    inventory_dir = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    own = inventory_dir / "host_vars" / LIMIT
    own_vars = yaml.safe_load(own.read_text()) if own.is_file() else {}
    cases = {f"bad-{n:02}": {**own_vars, "ansible_host": LIMIT, "ansible_connection": "docker", **bad}
             for n, (bad, _) in enumerate(BAD_VARIABLES)}
    extra = tmp_path_factory.mktemp("bad") / "bad-variables.json"
    extra.write_text(json.dumps({"appservers": {"hosts": cases}}))
    before = {path: host.file(path).content_string for path in WATCHED}
    result = testlib.run_playbook("site.yml", ",".join(cases), options=["-i", str(extra)],
                                  env={"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"})
    after = {path: host.file(path).content_string for path in WATCHED}
    return before, result, json.loads(result.stdout[result.stdout.index("{"):]), after


def failures(report, name):
    """The results of the tasks that failed on host `name` in a JSON report, as text: of
    a looped check, only its failed items (the others carry their messages too)."""
    def failed(result):
        items = [item for item in result.get("results", []) if item.get("failed")]
        return json.dumps(items if items else result)

    return [failed(task["hosts"][name]) for play in report["plays"] for task in play["tasks"]
            if task["hosts"].get(name, {}).get("failed")]


@pytest.mark.parametrize("case", range(len(BAD_VARIABLES)),
                         ids=[message.split(":")[0] for _, message in BAD_VARIABLES])
def test_bad_variable_fails_before_any_change_and_the_site_stays_up(bad_variable_runs, https, case):
    """The host is converged with a good configuration; a run with a bad value fails
    in the checks, naming the variable, changes nothing, and the site keeps
    answering."""
    before, result, report, after = bad_variable_runs
    name, message = f"bad-{case:02}", BAD_VARIABLES[case][1]
    assert result.returncode != 0
    failed = failures(report, name)
    assert len(failed) == 1 and message in failed[0], failed
    stats = report["stats"][name]
    assert stats["changed"] == 0 and stats["failures"] == 1, stats
    assert after == before
    assert https("/healthz").status == 200


def test_a_slow_client_is_cut_off(hostvars, addresses):
    """A client that sends its request header slower than nginx_client_timeout (5 s on
    this host) loses the connection; it never reaches the app."""
    timeout = int(hostvars["nginx_client_timeout"].rstrip("s"))
    server_ip, _ = addresses
    with socket.create_connection((server_ip, 80), timeout=timeout + 10) as conn:
        conn.sendall(b"GET /whoami HTTP/1.1\r\nHost: debian12.test\r\n")
        started = time.monotonic()
        for _ in range(3):
            # Drip: one header line now and then, never the end of the header.
            time.sleep(1)
            conn.sendall(b"X-Slow: 1\r\n")
        data = conn.recv(65536)
        waited = time.monotonic() - started
    # Closed without an answer (or with 408), after the timeout and not much later.
    assert data in (b"",) or data.startswith(b"HTTP/1.1 408"), data[:200]
    assert timeout - 1 <= waited <= timeout + 5, waited


def test_config_change_reloads_without_restart(host, https):
    """A changed setting of the WSGI server (wsgi_timeout) reloads it: same master,
    new workers. The next test's run puts the setting back (it sets only vault's
    variables), which saves CI a converge."""
    master = testlib.main_pid(host, f"{APP}.service")
    workers = testlib.child_pids(host, master)
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


# The vault example (examples/vault): its password, its encrypted values, and its
# secrets in clear text, which must never be printed.
VAULT = testlib.REPO / "examples/vault/group_vars/appservers"
VAULT_SECRETS = ["example-secret-key-3f9c1e7a5b2d4c6e8f0a1b3c5d7e9f1a", "example-db-password-7d2e"]


@pytest.fixture
def vault_options(tmp_path):
    password = tmp_path / "vault-pass"
    password.write_text("flaskdeploy-example-only\n")
    return ["--vault-password-file", str(password), "-e", f"@{VAULT}/vault.yml", "-e", f"@{VAULT}/vars.yml"]


def test_secrets_from_ansible_vault_stay_in_root_only_files(host, https, vault_options):
    """The vault example: its encrypted values reach the app's environment, in files
    only root can read, and never the playbook's output. The host keeps them: the
    next test checks that mode with them (no run puts the scenario's own back)."""
    secret_key, db_password = VAULT_SECRETS
    assert secret_key not in (VAULT / "vault.yml").read_text()
    result = testlib.run_playbook("site.yml", LIMIT, options=["-v", "--diff", *vault_options])
    assert result.returncode == 0, result.stdout[-3000:]
    for secret in VAULT_SECRETS:
        assert secret not in result.stdout + result.stderr
    for name, value in [("secret.env", f"SECRET_KEY={secret_key}\n"), ("app.env", db_password)]:
        env = host.file(f"/etc/{APP}/{name}")
        assert value in env.content_string
        assert env.user == "root" and env.mode == 0o600
    assert https("/healthz").status == 200
    # The previous test's wsgi_timeout is back to the scenario's own.
    assert "timeout = 30\n" in host.file(f"/etc/{APP}/gunicorn.conf.py").content_string


def test_check_mode_on_converged_host_reports_no_changes(vault_options):
    """--check --diff on the host as the previous test left it (with the vault's
    values): nothing to change, and no secret in the diff."""
    result = testlib.run_playbook("site.yml", LIMIT, options=["--check", "--diff", *vault_options])
    assert result.returncode == 0, result.stdout[-3000:]
    assert testlib.recap(result.stdout, LIMIT)["changed"] == "0", testlib.changed_tasks(result.stdout)
    for secret in VAULT_SECRETS:
        assert secret not in result.stdout + result.stderr


def test_one_off_commands_run_in_the_apps_context_and_sandbox(host):
    """/usr/local/sbin/hello-run on the server: the current release, its virtualenv,
    the app's environment and FLASK_APP, as the app user, under the service's sandbox
    (a private /var/tmp, other users' processes hidden, the shared data writable)."""
    release = host.file(f"/srv/{APP}/current").linked_to
    script = ('id -un; pwd -P; test -n "$SECRET_KEY" && echo secret; echo "$FLASK_APP"; '
              "command -v python; echo private > /var/tmp/fd-run-probe && echo wrote-var-tmp; "
              "test -e /proc/1/status || echo proc-hidden; "
              f"touch /var/lib/{APP}/shared/instance/fd-run-probe && echo data-writable")
    out = host.check_output(f"/usr/local/sbin/{APP}-run sh -c {shlex.quote(script)}")
    assert out.splitlines() == [APP, release, "secret", "hello:create_app()", f"{release}/venv/bin/python",
                                "wrote-var-tmp", "proc-hidden", "data-writable"]
    assert not host.file("/var/tmp/fd-run-probe").exists  # it was the sandbox's own
    assert host.file(f"/var/lib/{APP}/shared/instance/fd-run-probe").user == APP
    # Flask's CLI finds the app; the command's exit status is the script's.
    assert "/whoami" in host.check_output(f"/usr/local/sbin/{APP}-run flask routes")
    assert host.run(f"/usr/local/sbin/{APP}-run sh -c 'exit 7'").rc == 7


def test_one_off_command_from_the_controller(host):
    result = testlib.run_playbook("playbooks/run.yml", LIMIT,
                                  {"app_run": "echo ran-as-$(id -un)-routes-$(flask routes | grep -c /version)"})
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"ran-as-{APP}-routes-1" in result.stdout
    assert testlib.recap(result.stdout, LIMIT)["changed"] == "1"
