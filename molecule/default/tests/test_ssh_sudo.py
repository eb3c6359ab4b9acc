"""site.yml the way users run it: over SSH, as a user who becomes root with sudo (and
its password, as with --ask-become-pass or a vaulted ansible_become_password), on a
new server (the scenario's own containers are reached with the docker connection).
Under mitogen (ansible.cfg) a run needs one or two sudo calls: one privileged
interpreter serves every task."""

import subprocess

import pytest
import testlib

NAME = "fd-default-ssh"
SERVER_NAME = "ssh.test"
NETWORK = "flaskdeploy-default"  # the scenario's network (molecule.yml)
PASSWORD = "sudo-password-of-the-test"


def sudo_commands(server):
    """How many commands sudo has run on the server (its journal entries)."""
    out = server.exec_run("journalctl -q -o cat _COMM=sudo --no-pager").output.decode()
    return sum(1 for line in out.splitlines() if "COMMAND=" in line)


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory):
    """A new Debian 12 server with sshd, and a user `deploy` who logs in with a key made
    for the test and may sudo with a password. Yields (container, inventory path)."""
    keydir = tmp_path_factory.mktemp("ssh")
    key = keydir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    server = testlib.systemd_container(NAME, SERVER_NAME, network=NETWORK)
    try:
        setup = f"""set -e
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server sudo >/dev/null
            useradd --create-home --shell /bin/bash deploy
            install -d -m 0700 -o deploy -g deploy /home/deploy/.ssh
            echo '{key.with_suffix(".pub").read_text().strip()}' > /home/deploy/.ssh/authorized_keys
            chown deploy:deploy /home/deploy/.ssh/authorized_keys
            echo 'deploy:{PASSWORD}' | chpasswd
            echo 'deploy ALL=(ALL) ALL' > /etc/sudoers.d/deploy
            chmod 0440 /etc/sudoers.d/deploy
            systemctl enable --now ssh.service"""
        result = server.exec_run(["sh", "-c", setup])
        assert result.exit_code == 0, result.output.decode()[-2000:]
        address, _ = testlib.network_addresses(NAME)
        inventory = testlib.server_inventory(
            keydir / "hosts.json", NAME, SERVER_NAME,
            ansible_host=address, ansible_user="deploy", ansible_become_password=PASSWORD,
            ansible_ssh_private_key_file=str(key),
            # A new host key each run: not checked (mitogen reads this variable, ssh the options).
            ansible_host_key_checking=False,
            ansible_ssh_common_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null")
        yield server, inventory
    finally:
        server.remove(force=True)


@pytest.fixture(scope="module")
def converged(ssh_server):
    """The first run and the rerun, with the sudo count of each."""
    server, inventory = ssh_server
    runs = []
    for _ in range(2):
        before = sudo_commands(server)
        result = testlib.run_playbook("site.yml", NAME, inventory=inventory)
        runs.append((result, sudo_commands(server) - before))
    return runs


def test_a_new_server_converges_over_ssh_with_sudo(converged):
    (first, _), _ = converged
    assert first.returncode == 0, first.stdout[-3000:]
    recap = testlib.recap(first.stdout, NAME)
    assert recap["failed"] == "0" and int(recap["changed"]) > 0
    assert PASSWORD not in first.stdout + first.stderr


def test_the_rerun_over_ssh_changes_nothing(converged):
    _, (rerun, _) = converged
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert testlib.recap(rerun.stdout, NAME)["changed"] == "0", testlib.changed_tasks(rerun.stdout)


def test_the_site_answers_over_https(ssh_server, converged):
    server, _ = ssh_server
    address, _ = testlib.network_addresses(NAME)
    resp = testlib.request(address, "/whoami", server_name=SERVER_NAME)
    assert resp.status == 200
    assert resp.json()["scheme"] == "https"
    user = server.exec_run("ps -o user= -C gunicorn").output.decode().split()
    assert user and set(user) == {"hello"}


def test_mitogen_needs_one_sudo_per_run(converged):
    """Ansible's own linear strategy runs sudo for every task (86 in the first run here)."""
    pytest.importorskip("ansible_mitogen", reason="requirements-dev.txt installs mitogen")
    (_, first_sudos), (_, rerun_sudos) = converged
    assert 1 <= first_sudos <= 2
    assert 1 <= rerun_sudos <= 2
