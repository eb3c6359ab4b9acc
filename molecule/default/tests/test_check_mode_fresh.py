"""`site.yml --check` on a server nothing has run on yet: it previews the changes and
changes nothing (tasks that need what an earlier task would install are guarded)."""

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


@pytest.mark.parametrize("extra_vars", [{"firewall_enabled": True},
                                        {"flaskdeploy_profile": "wsgi", "wsgi_server": "uwsgi"}],
                         ids=["https-firewall", "wsgi-uwsgi"])
def test_check_mode_on_a_fresh_server_changes_nothing(fresh_server, tmp_path, extra_vars):
    inventory = testlib.server_inventory(tmp_path / "hosts.json", NAME, "fresh.test",
                                         ansible_connection="docker", **extra_vars)
    result = testlib.run_playbook("site.yml", NAME, options=["--check", "--diff"], inventory=inventory)
    assert result.returncode == 0, result.stdout[-3000:]
    recap = testlib.recap(result.stdout, NAME)
    assert recap["failed"] == "0"
    assert int(recap["changed"]) > 0  # it previews the installation
    for command in ("dpkg -s nginx", "dpkg -s python3-venv", "test -e /srv/hello",
                    "test -e /etc/systemd/system/hello.socket", "getent passwd hello"):
        assert fresh_server.exec_run(command).exit_code != 0, command
