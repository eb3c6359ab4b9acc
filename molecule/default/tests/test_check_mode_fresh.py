"""`site.yml --check` on a server nothing has run on yet: it previews the changes and
changes nothing (tasks that need what an earlier task would install are guarded)."""

import json
import re

import pytest
import testlib

NAME = "fd-default-fresh"
IMAGE = "flaskdeploy/debian:12"


@pytest.fixture(scope="module")
def fresh_server():
    """A new Debian 12 container that boots systemd, like the scenario's own, with
    python3-apt (without it check mode stops after the bootstrap: test_first_run),
    removed after."""
    server = testlib.systemd_container(NAME, "fresh.test", image=IMAGE)
    try:
        result = server.exec_run(["sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                                  "apt-get install -y -qq --no-install-recommends python3-apt >/dev/null"])
        assert result.exit_code == 0, result.output.decode()[-2000:]
        yield server
    finally:
        server.remove(force=True)


# Inventory names for the one server, each with the settings of a site: one run of
# site.yml --check previews both (nothing it does changes the server, so they cannot
# meet), for the price of one.
SITES = {
    # HTTPS behind the firewall, with the app's own PostgreSQL and Redis.
    "fresh-https": {"firewall_enabled": True, "postgresql_enabled": True, "redis_enabled": True},
    # uWSGI alone on port 80.
    "fresh-wsgi": {"flaskdeploy_profile": "wsgi", "wsgi_server": "uwsgi"},
}
# Tasks each site's preview must show as changes (their packages, to begin with).
PREVIEWED = {
    "fresh-https": ["nginx : Install nginx", "postgresql : Install PostgreSQL", "redis : Install Redis"],
    "fresh-wsgi": ["wsgi : Install uWSGI and its Python 3 plugin"],
}


@pytest.fixture(scope="module")
def fresh_inventory(tmp_path_factory):
    inventory = tmp_path_factory.mktemp("fresh") / "hosts.json"
    inventory.write_text(json.dumps({"appservers": {"hosts": {
        name: {"ansible_host": NAME, "ansible_connection": "docker", "nginx_server_names": ["fresh.test"],
               "ca_trust_certificates": testlib.extra_ca_certificates(), **settings}
        for name, settings in SITES.items()}}}))
    return str(inventory)


@pytest.fixture(scope="module")
def fresh_check(fresh_server, fresh_inventory):
    return testlib.run_playbook("site.yml", ",".join(SITES), options=["--check", "--diff"],
                                inventory=fresh_inventory)


def test_a_deploy_to_a_server_site_yml_never_ran_on_stops_and_says_so(fresh_server, fresh_inventory):
    """deploy.yml before site.yml: it fails before any change, naming what to run."""
    result = testlib.run_playbook("playbooks/deploy.yml", "fresh-https", inventory=fresh_inventory)
    assert result.returncode != 0
    assert "fresh-https has no hello.service: run site.yml on it first." in result.stdout, result.stdout[-3000:]
    assert testlib.recap(result.stdout, "fresh-https")["changed"] == "0"
    assert fresh_server.exec_run("test -e /srv/hello").exit_code != 0


@pytest.mark.parametrize("site", list(SITES))
def test_check_mode_on_a_fresh_server_changes_nothing(fresh_server, fresh_check, site):
    result = fresh_check
    assert result.returncode == 0, result.stdout[-3000:]
    recap = testlib.recap(result.stdout, site)
    assert recap["failed"] == "0"
    assert int(recap["changed"]) > 0  # it previews the installation
    blocks = re.split(r"^TASK \[", result.stdout, flags=re.M)
    for task in PREVIEWED[site]:
        block = next((b for b in blocks if b.startswith(task)), "")
        assert f"changed: [{site}]" in block, (task, block[:1000])
    for command in ("dpkg -s nginx", "dpkg -s python3-venv", "dpkg -s uwsgi-core", "dpkg -s postgresql",
                    "dpkg -s redis-server", "test -e /srv/hello", "test -e /etc/systemd/system/hello.socket",
                    "getent passwd hello", "test -e /etc/flaskdeploy"):
        assert fresh_server.exec_run(command).exit_code != 0, command
