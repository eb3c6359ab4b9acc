"""A user's first run, as the README tells it: the repository's own `inventory/` with
servers added to its hosts.yml, the repository's ansible.cfg, no flags, over SSH as a
user who becomes root with sudo and its password (as with --ask-become-pass or a
vaulted ansible_become_password).

The server is a new container built from a minbase debootstrap of Debian 13 in the
shape that needs the most: no python3 at all (a netinst with only the SSH server).
The other shapes minimal servers come in are covered elsewhere: python3 without
python3-apt (a minbase, some cloud images) is every other scenario's server
(molecule/scripts/build-image.sh; Debian 12, and 13 in default), python3 with
python3-apt (many cloud images) is what the bootstrap leaves on every converged
server, and check mode on such a new server is test_check_mode_fresh.py's. CI's time
is short: a server here is a whole converge and rerun under the linear strategy
(about 2.5 times mitogen's CPU), so SERVERS holds one (each entry is a server; the
test takes several).
Its inventory name is left as nginx_server_names' default: the site answers on the
name it has in the inventory, and also on its address, as the README says; it is
reached on another SSH port, behind the firewall.

The servers converge in one run with Ansible's linear strategy (ansible.cfg's
default, whatever CI selects for the scenarios).

CI runs this module as a job of its own (molecule/scripts/test.sh), beside the
scenarios; `molecule test -s default` runs it with the rest."""

import http.client
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import testlib
import yaml

# CI runs this module as a job of its own, beside the scenarios: there the default
# scenario's verify skips it (molecule/scripts/test.sh sets the variable for the
# scenarios, and not for that job).
if os.environ.get("FLASKDEPLOY_FIRST_RUN_ELSEWHERE"):
    pytest.skip("run as a job of its own (FLASKDEPLOY_FIRST_RUN_ELSEWHERE)", allow_module_level=True)

NETWORK = "flaskdeploy-first-run"  # its own: the module also runs beside the scenario
PASSWORD = "sudo-password-of-the-test"
SHAPES = {"full": "python3 python3-apt", "bare": ""}
# Inventory name -> (container, Debian release, shape).
SERVERS = {f"{shape}{release}.first.test": (f"fd-first-{shape}{release}", release, shape)
           for shape, release in (("bare", 13),)}
# Reached by its address too: the site is nginx's default, its certificate names it.
BY_ADDRESS = {"bare13.first.test"}
# Reached on another SSH port, known only to the SSH client (as a port set in
# ~/.ssh/config, not in the inventory), with the firewall on: the ruleset must keep
# that port open, or the next run is locked out.
SSH_PORT = {"bare13.first.test": 2222}


def has(server, command):
    return server.exec_run(["sh", "-c", command]).exit_code == 0


def start(name, release, shape, public_key, ssh_port=None):
    """A new server from the bare image: sshd (also on ssh_port), a user `deploy` who
    logs in with the test's key and may sudo with a password, and the Python
    packages of its shape."""
    server = testlib.systemd_container(name, name, network=NETWORK, image=f"flaskdeploy/debian:{release}-bare",
                                       capabilities=("SYS_ADMIN", "NET_ADMIN") if ssh_port else ("SYS_ADMIN",))
    ports = f"printf 'Port 22\\nPort %s\\n' {ssh_port} > /etc/ssh/sshd_config.d/ports.conf" if ssh_port else "true"
    setup = f"""set -e
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            openssh-server {SHAPES[shape]} >/dev/null
        useradd --create-home --shell /bin/bash deploy
        install -d -m 0700 -o deploy -g deploy /home/deploy/.ssh
        echo '{public_key}' > /home/deploy/.ssh/authorized_keys
        chown deploy:deploy /home/deploy/.ssh/authorized_keys
        echo 'deploy:{PASSWORD}' | chpasswd
        echo 'deploy ALL=(ALL) ALL' > /etc/sudoers.d/deploy
        chmod 0440 /etc/sudoers.d/deploy
        {ports}
        systemctl enable ssh.service && systemctl restart ssh.service"""
    result = server.exec_run(["sh", "-c", setup])
    assert result.exit_code == 0, result.output.decode()[-2000:]
    # The shape is real: openssh-server pulled in no Python.
    assert has(server, "test -x /usr/bin/python3") == (shape != "bare"), name
    assert has(server, "dpkg -s python3-apt") == (shape == "full"), name
    assert not ssh_port or has(server, f"ss -Htln 'sport = :{ssh_port}' | grep -q ."), name
    return server


def user_inventory(path, servers, key):
    """The repository's inventory/ as a user has it after the README's step 1: its
    group_vars untouched, the servers added to hosts.yml. The rest of what the hosts
    say is the user's SSH setup (address, user, key, sudo password) and the CAs of
    the TLS-intercepting proxy of this network (ca_trust_certificates)."""
    shutil.copytree(testlib.REPO / "inventory", path)
    cas = testlib.extra_ca_certificates()
    hosts = {}
    for name, (container, _, _) in servers.items():
        address = testlib.network_addresses(container)[0]
        hosts[name] = {"ansible_host": address}
        if name in BY_ADDRESS:
            hosts[name].update(nginx_server_names=[name, address], nginx_reject_unknown_hosts=False)
        if name in SSH_PORT:
            hosts[name].update(firewall_enabled=True, ansible_ssh_common_args=(
                f"-o Port={SSH_PORT[name]} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"))
    inventory = yaml.safe_load((path / "hosts.yml").read_text())
    assert inventory["appservers"]["hosts"] is None  # only the commented examples
    inventory["appservers"] = {"hosts": hosts, "vars": {
        "ansible_user": "deploy", "ansible_become_password": PASSWORD,
        "ansible_ssh_private_key_file": str(key),
        # A new host key each run: not checked (mitogen reads this variable, ssh the options).
        "ansible_host_key_checking": False,
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        **({"ca_trust_certificates": cas} if cas else {})}}
    (path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    return str(path)


def run(inventory, *options, limit="all"):
    """site.yml as the README runs it, with ansible.cfg's strategy (linear)."""
    return testlib.run_playbook("site.yml", limit, options=options, inventory=inventory,
                                env={"ANSIBLE_STRATEGY": None})


def ssh_login(servers, name):
    """A new SSH login as the user, on the port the runs use: its output, or None."""
    address, _ = testlib.network_addresses(SERVERS[name][0])
    login = subprocess.run(
        ["ssh", "-i", str(servers["key"]), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-p", str(SSH_PORT.get(name, 22)),
         f"deploy@{address}", "echo", "in"],
        capture_output=True, text=True, timeout=30)
    return login.stdout.strip() or None


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """{inventory name: container} of every server, started side by side."""
    keydir = tmp_path_factory.mktemp("ssh")
    key = keydir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public_key = key.with_suffix(".pub").read_text().strip()
    started = {}
    network = testlib.own_network(NETWORK)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {name: pool.submit(start, *spec, public_key, SSH_PORT.get(name))
                       for name, spec in SERVERS.items()}
            for name, future in futures.items():
                started[name] = future.result()
        yield {"containers": started, "key": key, "inventory": user_inventory(keydir / "inventory", SERVERS, key)}
    finally:
        for _, (container, _, _) in SERVERS.items():
            try:
                testlib.container(container).remove(force=True)
            except Exception:  # noqa: BLE001 - a server that never started
                pass
        if network is not None:
            network.remove()


@pytest.fixture(scope="module")
def runs(servers):
    """Check mode on the new servers, the first run and the rerun (check mode on a
    converged server is the other scenarios' test: the shapes no longer differ
    there); and what each server had of python3, python3-apt and nginx after the
    first check."""
    containers, out = servers["containers"], {}
    for step, options in (("fresh check", ["--check", "--diff"]), ("first", []), ("rerun", [])):
        out[step] = run(servers["inventory"], *options)
        if step == "fresh check":
            out["after fresh check"] = {
                name: (has(containers[name], "test -x /usr/bin/python3"),
                       has(containers[name], "dpkg -s python3-apt"),
                       has(containers[name], "dpkg -s nginx"))
                for name in SERVERS}
    return out


def test_check_mode_on_new_servers_installs_nothing(runs):
    result = runs["fresh check"]
    assert result.returncode == 0, result.stdout[-3000:]
    for name, (_, _, shape) in SERVERS.items():
        recap = testlib.recap(result.stdout, name)
        assert recap["failed"] == "0" and int(recap["changed"]) > 0, (name, recap)
        # python3, python3-apt, nginx: as the shape had them, nginx on none.
        assert runs["after fresh check"][name] == (shape != "bare", shape == "full", False), name
        if shape == "bare":
            assert f"Would install {SHAPES['full']}" in result.stdout


def test_new_servers_converge_over_ssh_with_sudo(runs):
    result = runs["first"]
    assert result.returncode == 0, result.stdout[-3000:]
    for name in SERVERS:
        recap = testlib.recap(result.stdout, name)
        assert recap["failed"] == "0" and int(recap["changed"]) > 0, (name, recap)
    assert PASSWORD not in result.stdout + result.stderr
    # The default run prints no deprecation warning a user would learn to ignore.
    assert "DEPRECATION" not in result.stdout + result.stderr, result.stderr[-3000:]


def test_the_next_run_changes_nothing(runs):
    result = runs["rerun"]
    assert result.returncode == 0, result.stdout[-3000:]
    for name in SERVERS:
        assert testlib.recap(result.stdout, name)["changed"] == "0", (name, testlib.changed_tasks(result.stdout))


@pytest.mark.parametrize("name", list(SERVERS))
def test_each_site_answers_on_its_inventory_name_and_on_its_ip_as_configured(servers, runs, name):
    container, _, _ = SERVERS[name]
    server = servers["containers"][name]
    address, _ = testlib.network_addresses(container)
    resp = testlib.request(address, "/whoami", server_name=name)
    assert resp.status == 200
    assert resp.json()["scheme"] == "https"
    assert resp.json()["host"] == name
    assert resp.json()["url"] == f"https://{name}/whoami"
    user = server.exec_run("ps -o user= -C gunicorn").output.decode().split()
    assert user and set(user) == {"hello"}
    if name in BY_ADDRESS:
        # The default site answers on the address; the certificate names it (an IP entry).
        cafile = server.exec_run("cat /etc/nginx/ssl/hello.crt").output.decode()
        path = servers["key"].parent / f"{name}.crt"
        path.write_text(cafile)
        resp = testlib.request(address, "/whoami", cafile=str(path), server_name=address)
        assert resp.status == 200 and resp.json()["host"] == address
    else:
        # A bare IP address gets no answer (444), by design (README, step 1).
        with pytest.raises(http.client.RemoteDisconnected):
            testlib.request(address, "/whoami", scheme="http")
    # A new SSH login as the user still works after the runs.
    assert ssh_login(servers, name) == "in"


def test_a_firewall_change_that_shuts_ssh_out_is_undone(servers, runs):
    """A ruleset change after which no new SSH connection gets in (here a rule of the
    user's own in /etc/nftables.d/ that drops new connections to the SSH port) fails
    the run with a message, and the server loads the previous ruleset by itself; the
    next run, the rule gone, finds nothing to change."""
    import json

    name = "bare13.first.test"
    server = servers["containers"][name]
    before = server.exec_run("cat /etc/nftables.conf").output.decode()
    rule = ("table inet mine {\n chain input {\n  type filter hook input priority -10; policy accept;\n"
            f"  tcp dport {SSH_PORT[name]} ct state new drop\n }}\n}}\n")
    assert server.exec_run(["sh", "-c", f"printf '%s' '{rule}' > /etc/nftables.d/lockout.nft"]).exit_code == 0
    result = run(servers["inventory"], "-e", json.dumps({"firewall_allowed_tcp_ports": [80, 443, 8080],
                                                         "firewall_confirm_timeout": 20}), limit=name)
    assert result.returncode != 0
    assert "No new connection got in through the new firewall ruleset" in result.stdout, result.stdout[-3000:]
    # The previous ruleset is back within the timeout: SSH gets in again.
    testlib.wait_for(lambda: ssh_login(servers, name) == "in", timeout=60, interval=2, what="SSH to get in again")
    assert server.exec_run("cat /etc/nftables.conf").output.decode() == before
    assert server.exec_run(["sh", "-c", "ls /etc/nftables.conf.*"]).exit_code != 0  # no copy left
    tables = server.exec_run("nft list tables").output.decode()
    assert "inet mine" not in tables and "inet flaskdeploy" in tables
    assert "8080" not in server.exec_run("nft list table inet flaskdeploy").output.decode()
    assert server.exec_run("rm /etc/nftables.d/lockout.nft").exit_code == 0
    result = run(servers["inventory"], limit=name)
    assert result.returncode == 0, result.stdout[-3000:]
    assert testlib.recap(result.stdout, name)["changed"] == "0", testlib.changed_tasks(result.stdout)
