"""A user's first run, as the README tells it: the repository's own `inventory/` with
servers added to its hosts.yml, the repository's ansible.cfg, no flags, over SSH as a
user who becomes root with sudo and its password (as with --ask-become-pass or a
vaulted ansible_become_password).

The server is a new container built from a minbase mmdebstrap of Debian 13 in the
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
name it has in the inventory, and also on its address, as docs/deploying.md says; it is
reached on another SSH port, behind the firewall.

The host baseline (roles/baseline) is tested here, where the run comes over SSH as
users' runs do: SSH settings, the key-login check before password logins go,
fail2ban against another container (CLIENT), the updates, the journal, the logs.

The first run logs in with the user's password, as on a server a provider hands
over: it converges all but the SSH settings and stops there, saying why; the user
installs a key (here: it was there already) and the second run, with the key,
finishes. Every run uses Ansible's linear strategy (ansible.cfg's default, whatever
CI selects for the scenarios).

CI runs this module as a job of its own (molecule/scripts/test.sh), beside the
scenarios; `molecule test -s default` runs it with the rest."""

import http.client
import os
import re
import shlex
import shutil
import warnings
import subprocess
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest
import testlib
import yaml

# CI runs this module as a job of its own, beside the scenarios: there the default
# scenario's verify skips it (molecule/scripts/test.sh sets the variable for the
# scenarios, and not for that job).
if os.environ.get("FLASKDEPLOY_FIRST_RUN_ELSEWHERE"):
    pytest.skip("run as a job of its own (FLASKDEPLOY_FIRST_RUN_ELSEWHERE)", allow_module_level=True)

NETWORK = "flaskdeploy-first-run"  # its own: the module also runs beside the scenario
# Dual-stack, as many servers are: the firewall must keep IPv6 working.
NETWORK_IPV6 = "fd42:f1a5:d3b1::/64"
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


NAME = "bare13.first.test"  # the server the host baseline's tests look at
SSH_DROP_IN = "/etc/ssh/sshd_config.d/00-flaskdeploy.conf"  # the baseline role's
CLIENT = "fd-first-client"  # another machine on the servers' network, with an SSH client


def start_client():
    """A plain container (no systemd) with an SSH client: the address that guesses
    logins in the fail2ban test, not the runs' own."""
    client = docker.from_env()
    try:
        client.containers.get(CLIENT).remove(force=True)
    except docker.errors.NotFound:
        pass
    box = client.containers.run("flaskdeploy/debian:13-bare", ["sleep", "1800"], name=CLIENT,
                                detach=True, network=NETWORK)
    result = box.exec_run(["sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                           "apt-get install -y -qq --no-install-recommends openssh-client >/dev/null"])
    assert result.exit_code == 0, result.output.decode()[-2000:]
    return box


def user_inventory(path, servers, key):
    """The repository's inventory/ as a user has it after the README's step 1: its
    group_vars untouched, the servers added to hosts.yml. The rest of what the hosts
    say is the user's SSH setup (address, user, key, sudo password) and the CAs of
    the TLS-intercepting proxy of this network (ca_trust_certificates)."""
    shutil.copytree(testlib.REPO / "inventory", path)
    cas = testlib.extra_ca_certificates()
    hosts = {}
    for name, (container, _, _) in servers.items():
        address, controller = testlib.network_addresses(container)
        # The operator's address is never banned by fail2ban (docs/baseline.md's advice).
        hosts[name] = {"ansible_host": address, "baseline_fail2ban_ignore_addresses": [controller]}
        if name in BY_ADDRESS:
            hosts[name].update(nginx_server_names=[name, address], nginx_reject_unknown_hosts=False)
        if name == NAME:
            # The nginx jail too (off by default), with fewer refusals than its default.
            hosts[name].update(baseline_fail2ban_nginx_enabled=True, baseline_fail2ban_nginx_max_retry=10)
        if name in SSH_PORT:
            # The firewall with ICMP off: IPv6's neighbour discovery must still get in.
            hosts[name].update(firewall_enabled=True, firewall_allow_icmp=False, ansible_ssh_common_args=(
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


def ssh_argv(name, user="deploy", options=()):
    """An SSH client's command line to the server, on the port the runs use, that
    never asks (BatchMode) and does not check the new host key."""
    address, _ = testlib.network_addresses(SERVERS[name][0])
    return ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=5", *options, "-p", str(SSH_PORT.get(name, 22)), f"{user}@{address}"]


def ssh(servers, name, command, user="deploy", options=()):
    """A new SSH login from the controller, with the test's key: the completed process."""
    return subprocess.run(ssh_argv(name, user, ["-i", str(servers["key"]), *options]) + [command],
                          capture_output=True, text=True, timeout=30)


def ssh_login(servers, name):
    """A new SSH login as the user, on the port the runs use: its output, or None."""
    return ssh(servers, name, "echo in").stdout.strip() or None


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """{inventory name: container} of every server, started side by side."""
    keydir = tmp_path_factory.mktemp("ssh")
    key = keydir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public_key = key.with_suffix(".pub").read_text().strip()
    started = {}
    network = testlib.own_network(NETWORK, ipv6_subnet=NETWORK_IPV6)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            client = pool.submit(start_client)
            futures = {name: pool.submit(start, *spec, public_key, SSH_PORT.get(name))
                       for name, spec in SERVERS.items()}
            for name, future in futures.items():
                started[name] = future.result()
            client = client.result()
        yield {"containers": started, "client": client, "key": key,
               "inventory": user_inventory(keydir / "inventory", SERVERS, key)}
    finally:
        for container in [CLIENT] + [spec[0] for spec in SERVERS.values()]:
            try:
                testlib.container(container).remove(force=True)
            except Exception:  # noqa: BLE001 - a container that never started
                pass
        if network is not None:
            network.remove()


@pytest.fixture(scope="module")
def runs(servers):
    """Check mode on the new servers; a first run that logs in with the user's
    password, as on a server a provider hands over (it converges all but the SSH
    settings and stops there, see the last test); the run with the key, after the
    user installed it; a run whose firewall change shuts SSH out (see
    test_a_firewall_change_that_shuts_ssh_out_is_undone); and the rerun after it
    (check mode on a converged server is the other scenarios' test: the shapes no
    longer differ there). Also what each server had of python3, python3-apt and
    nginx after the first check, what sshd allowed after the password run, and the
    firewall's state after the run that shut SSH out."""
    import json

    password = ["-e", json.dumps({
        # No key; a connection of its own, not a ControlPersist master of a key login.
        "ansible_password": PASSWORD, "ansible_ssh_extra_args": "-o PubkeyAuthentication=no",
        "ansible_ssh_args": "-o ControlMaster=auto -o ControlPersist=60s -o ControlPath=~/.ansible/cp/first-run-pw-%C"})]
    containers, out = servers["containers"], {}
    for step, options in (("fresh check", ["--check", "--diff"]), ("password", password), ("first", [])):
        out[step] = run(servers["inventory"], *options)
        if step == "fresh check":
            out["after fresh check"] = {
                name: (has(containers[name], "test -x /usr/bin/python3"),
                       has(containers[name], "dpkg -s python3-apt"),
                       has(containers[name], "dpkg -s nginx"))
                for name in SERVERS}
        if step == "password":
            out["after password"] = (sshd_settings(servers)["passwordauthentication"],
                                     sh(servers, f"test -e {SSH_DROP_IN}")[0] == 0)
    out["lockout"] = firewall_lockout(servers)
    # The rerun after it all: converged, it changes nothing.
    out["rerun"] = run(servers["inventory"])
    return out


def firewall_lockout(servers):
    """A ruleset change after which no new SSH connection gets in (here a rule of the
    user's own in /etc/nftables.d/ that drops new connections to the SSH port, and a
    new port to open): the run, and what the server has once it gave up. The rule is
    removed afterwards."""
    import json

    server = servers["containers"][NAME]
    read = server.exec_run("cat /etc/nftables.conf")
    # (what a failure below needs to be read: the file as read, and whether a return
    # to a previous ruleset was still armed)
    before = read.output.decode()
    armed = server.exec_run("systemctl is-active flaskdeploy-firewall-revert.timer").output.decode().strip()
    rule = ("table inet mine {\n chain input {\n  type filter hook input priority -10; policy accept;\n"
            f"  tcp dport {SSH_PORT[NAME]} ct state new drop\n }}\n}}\n")
    assert server.exec_run(["sh", "-c", f"printf '%s' '{rule}' > /etc/nftables.d/lockout.nft"]).exit_code == 0
    try:
        result = run(servers["inventory"], "-e", json.dumps({"firewall_allowed_tcp_ports": [80, 443, 8080],
                                                             "firewall_confirm_timeout": 20}), limit=NAME)
        # The previous ruleset is back within the timeout: SSH gets in again.
        try:
            testlib.wait_for(lambda: ssh_login(servers, NAME) == "in", timeout=60, interval=2,
                             what="SSH to get in again")
            ssh_back = True
            # (the tables come back first, then the file: the revert is done once its
            # state is gone)
            testlib.wait_for(lambda: server.exec_run("test -e /run/flaskdeploy-firewall").exit_code != 0,
                             timeout=30, interval=1, what="the revert to finish")
        except AssertionError:
            ssh_back = False
        return {"result": result, "ssh back": ssh_back, "before": before, "before read": (read.exit_code, armed),
                "after": server.exec_run("cat /etc/nftables.conf").output.decode(),
                "copies": server.exec_run(["sh", "-c", "ls /etc/nftables.conf.*"]).exit_code,
                "tables": server.exec_run("nft list tables").output.decode(),
                "ours": server.exec_run("nft list table inet flaskdeploy").output.decode()}
    finally:
        assert server.exec_run("rm /etc/nftables.d/lockout.nft").exit_code == 0


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


def sh(servers, command):
    """A shell command on the server (as root, through docker): (exit code, output)."""
    result = servers["containers"][NAME].exec_run(["sh", "-c", command])
    return result.exit_code, result.output.decode()


def sshd_settings(servers):
    """The settings sshd runs with (sshd -T), lower-case names as keys."""
    code, out = sh(servers, "sshd -T")
    assert code == 0, out
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_ssh_takes_keys_only_no_root_and_modern_algorithms(servers, runs):
    settings = sshd_settings(servers)
    expected = {"passwordauthentication": "no", "kbdinteractiveauthentication": "no", "permitrootlogin": "no",
                "permitemptypasswords": "no", "pubkeyauthentication": "yes", "permituserenvironment": "no",
                "x11forwarding": "no", "allowtcpforwarding": "no", "allowagentforwarding": "no",
                "maxauthtries": "4", "logingracetime": "30", "clientaliveinterval": "300", "loglevel": "VERBOSE"}
    assert {key: settings.get(key) for key in expected} == expected
    kex, ciphers, macs = (settings[key].split(",") for key in ("kexalgorithms", "ciphers", "macs"))
    # Debian 13's OpenSSH 10 knows the post-quantum ML-KEM exchange: first.
    assert kex[0] == "mlkem768x25519-sha256", kex
    assert not [k for k in kex if "sha1" in k or "group14" in k or "nistp" in k], kex
    assert ciphers[0] == "chacha20-poly1305@openssh.com" and not [c for c in ciphers if "cbc" in c], ciphers
    assert not [m for m in macs if "sha1" in m or "md5" in m or "umac-64" in m], macs
    # A password login is not even offered: the server names only publickey.
    guess = ssh(servers, NAME, "true", options=["-o", "PubkeyAuthentication=no",
                                               "-o", "PreferredAuthentications=password,keyboard-interactive"])
    assert guess.returncode == 255 and "Permission denied (publickey)." in guess.stderr, guess.stderr
    # root is refused, even with a key it has.
    assert sh(servers, "install -d -m 0700 /root/.ssh && cp /home/deploy/.ssh/authorized_keys /root/.ssh/")[0] == 0
    try:
        as_root = ssh(servers, NAME, "id -un", user="root")
    finally:
        sh(servers, "rm -f /root/.ssh/authorized_keys")
    assert as_root.returncode == 255 and "Permission denied" in as_root.stderr, as_root.stderr
    # The user logs in with the key, and sudo works.
    with_sudo = ssh(servers, NAME, f"echo '{PASSWORD}' | sudo -S -p '' id -un")
    assert with_sudo.stdout.strip() == "root", with_sudo.stderr


def banned(servers, jail="sshd"):
    """The addresses a fail2ban jail bans now."""
    code, out = sh(servers, f"fail2ban-client status {jail}")
    assert code == 0, out
    line = next(line for line in out.splitlines() if "Banned IP list:" in line)
    return line.split(":", 1)[1].split()


def test_fail2ban_bans_a_login_guesser_on_every_port_until_the_ban_time_is_over(servers, runs):
    """Failed logins from a machine on the network (the client container) ban it
    from SSH and HTTPS; the same failures from the operator's address (exempted in
    the inventory) ban nothing; the ban ends after the ban time (600 s, as the
    role's default; shortened here to 15 s on the running jail)."""
    client, (address, _) = servers["client"], testlib.network_addresses(SERVERS[NAME][0])
    client_address = testlib.network_addresses(CLIENT)[0]
    assert sh(servers, "fail2ban-client get sshd bantime")[1].strip() == "600"
    assert sh(servers, "fail2ban-client get sshd maxretry")[1].strip() == "5"
    assert sh(servers, "fail2ban-client set sshd bantime 15")[0] == 0
    guess = ssh_argv(NAME, user="nosuchuser") + ["true"]
    for _ in range(6):
        assert ssh(servers, NAME, "true", user="nosuchuser").returncode == 255
    for _ in range(5):
        out = client.exec_run(guess).output.decode()
        assert "Permission denied" in out or client_address in banned(servers), out
    testlib.wait_for(lambda: client_address in banned(servers), timeout=30, what="the guesser to be banned")
    assert banned(servers) == [client_address]

    def shut_out():
        out = client.exec_run(guess).output.decode()
        return "Permission denied" not in out and ("refused" in out or "timed out" in out)

    # (the ban's nftables rule follows the jail's list by a moment)
    try:
        testlib.wait_for(shut_out, timeout=20, interval=1, what="the ban to shut the guesser out")
    except AssertionError:
        raise AssertionError(sh(servers, "nft list tables; tail -n 40 /var/log/fail2ban.log")[1])
    https = client.exec_run(["bash", "-c", f"timeout 5 bash -c 'exec 3<>/dev/tcp/{address}/443'"])
    assert https.exit_code != 0, https.output.decode()
    assert ssh_login(servers, NAME) == "in"
    testlib.wait_for(lambda: not banned(servers), timeout=60, interval=2, what="the ban to end")
    out = client.exec_run(guess).output.decode()
    assert "Permission denied" in out, out


def test_the_nginx_jail_bans_an_address_nginx_keeps_refusing(servers, runs):
    """The nginx jail (baseline_fail2ban_nginx_enabled, here 10 refusals in 60 s):
    requests nginx answers 400 from the client container ban it on every port; the
    controller (exempted) still reaches the site."""
    client, (address, _) = servers["client"], testlib.network_addresses(SERVERS[NAME][0])
    client_address = testlib.network_addresses(CLIENT)[0]
    assert sh(servers, "fail2ban-client get flaskdeploy-nginx maxretry")[1].strip() == "10"
    # A request line nginx cannot parse: 400, in the access log, over plain HTTP.
    bad = f"exec 3<>/dev/tcp/{address}/80 && printf 'BAD\\r\\n\\r\\n' >&3 && head -c 12 <&3"
    bounded = ["bash", "-c", f"timeout 5 bash -c {shlex.quote(bad)}"]
    first = client.exec_run(bounded).output.decode()
    if not first.startswith("HTTP/1.1 400"):
        # Once in CI (2026-12-07), right after the test above: the client's first
        # request was refused. Whatever shut it out then (the sshd jail's ban, or nginx
        # restarting), it is written down here, and the request tried again: the jail's
        # test needs the client to reach nginx first; what it asserts below is unchanged.
        when_refused = " | ".join(sh(servers, "fail2ban-client status sshd; fail2ban-client status flaskdeploy-nginx;"
                                              " systemctl is-active nginx; nft list tables; date;"
                                              " tail -n 15 /var/log/fail2ban.log")[1].splitlines())
        testlib.wait_for(lambda: client.exec_run(bounded).output.decode().startswith("HTTP/1.1 400"),
                         timeout=45, interval=3, what=f"nginx to answer the client ({first!r}; then: {when_refused})")
        warnings.warn(testlib.RetriedWarning(f"the client reached nginx only on a later try: {first!r}; "
                                             f"then: {when_refused}"))

    def refuse(count):
        for _ in range(count):
            client.exec_run(["bash", "-c", f"timeout 5 bash -c {shlex.quote(bad)}"])

    def is_banned():
        return client_address in banned(servers, "flaskdeploy-nginx")

    def seen():
        # What fail2ban saw, on one line (CI's summary shows a failure's first line).
        return " | ".join(sh(servers, "fail2ban-client status flaskdeploy-nginx; date; tail -n 13 /var/log/nginx/access.log;"
                                      " grep -v ' sshd' /var/log/fail2ban.log | tail -n 30")[1].splitlines())

    refuse(11)
    try:
        try:
            testlib.wait_for(is_banned, timeout=30, interval=1, what="the nginx jail to ban the client")
        except AssertionError:
            # Twice in about ten CI runs, on a loaded machine, no ban came after the first
            # dozen (never here, in a dozen rounds under load). Another dozen: a jail that
            # bans then is one that works, and the warning shows CI's summary what it saw.
            before = seen()
            refuse(12)
            try:
                testlib.wait_for(is_banned, timeout=30, interval=1, what="the ban")
            except AssertionError:
                raise AssertionError(f"no ban after two dozen refusals: before the second: {before} || after: {seen()}") from None
            warnings.warn(testlib.RetriedWarning(f"the nginx jail banned only after a second dozen; before it: {before}"))

        def shut_out():
            return client.exec_run(["bash", "-c", f"timeout 5 bash -c 'exec 3<>/dev/tcp/{address}/443'"]).exit_code != 0

        # (the ban's nftables rule follows the jail's list by a moment: once, on a busy
        # CI machine, HTTPS still connected right after the ban was listed)
        testlib.wait_for(shut_out, timeout=20, interval=1, what="the ban to shut the client out of HTTPS")
        assert testlib.request(address, "/whoami", server_name=NAME).status == 200
    finally:
        sh(servers, f"fail2ban-client set flaskdeploy-nginx unbanip {client_address}")


def test_ipv6_neighbour_discovery_gets_through_the_firewall_with_icmp_off(servers, runs):
    """The server's network is dual-stack and its firewall is on with ICMP off
    (firewall_allow_icmp: false): the controller's ping over IPv6 gets no answer,
    yet the client container, which has never reached the server over IPv6 (no
    neighbour entry: it must ask for the server's link address, an ICMPv6 neighbour
    solicitation the server's firewall must let in), gets nginx's answer on port 80
    over IPv6. The client itself answers a ping: the ping check works."""
    client = servers["client"]
    address = testlib.ipv6_address(SERVERS[NAME][0])
    assert address, "the server has no IPv6 address"
    assert testlib.pings6(testlib.ipv6_address(CLIENT))
    assert not testlib.pings6(address)
    request = (f"exec 3<>/dev/tcp/{address}/80 && printf 'GET / HTTP/1.0\\r\\nHost: {NAME}\\r\\n\\r\\n' >&3"
               " && head -c 12 <&3")
    answer = client.exec_run(["timeout", "10", "bash", "-c", request]).output.decode()
    assert answer.startswith("HTTP/1.1 301"), answer  # to HTTPS


def test_only_security_updates_are_installed_every_day(servers, runs):
    code, out = sh(servers, "unattended-upgrade --dry-run -d 2>&1")
    assert code == 0, out[-3000:]
    line = next(line for line in out.splitlines() if line.startswith("Allowed origins are:"))
    assert line.split(":", 1)[1].strip().split(", ") == [
        "origin=Debian,codename=trixie-security,label=Debian-Security",
        "origin=Debian,codename=trixie,label=Debian-Security"], line
    # The main archive's updates (point releases) are left out: Debian's default takes them.
    assert [l for l in out.splitlines() if l.startswith("Marking not allowed") and "a=stable,c=main," in l], out
    code, out = sh(servers, "apt-config dump")
    for setting in ('APT::Periodic::Update-Package-Lists "1";', 'APT::Periodic::Unattended-Upgrade "1";',
                    'Unattended-Upgrade::Automatic-Reboot "false";'):
        assert setting in out.splitlines(), setting
    code, out = sh(servers, "systemctl is-enabled apt-daily.timer apt-daily-upgrade.timer")
    assert out.split() == ["enabled", "enabled"], out


def test_the_journal_is_on_disk_and_capped_the_clock_kept_and_logs_rotated(servers, runs):
    name = NAME
    # journald says where its journal is and its cap, each time it starts.
    code, out = sh(servers, "journalctl -o cat SYSLOG_IDENTIFIER=systemd-journald "
                            "| grep 'System Journal (/var/log/journal/' | tail -n 1")
    assert code == 0 and re.search(r", max 500(\.0)?M, ", out), out
    # timesyncd: enabled; it does not start in a container (its unit's condition).
    assert sh(servers, "systemctl is-enabled systemd-timesyncd")[1].strip() == "enabled"
    assert sh(servers, "systemd-detect-virt --container")[1].strip() not in ("", "none")
    assert sh(servers, "systemctl show -p ConditionResult systemd-timesyncd")[1].strip() == "ConditionResult=no"
    # nginx's logs rotate, and nginx writes to the new file.
    assert sh(servers, "systemctl is-active logrotate.timer")[1].strip() == "active"
    code, out = sh(servers, "logrotate -f /etc/logrotate.d/nginx && ls /var/log/nginx/")
    assert code == 0 and "access.log.1" in out.split(), out
    address, _ = testlib.network_addresses(SERVERS[name][0])
    assert testlib.request(address, "/whoami?after-rotation", server_name=name).status == 200
    testlib.wait_for(lambda: "/whoami?after-rotation" in sh(servers, "cat /var/log/nginx/access.log")[1],
                     what="nginx to write to the new access.log")
    # The nginx jail's filter (off by default) counts nginx's 4xx answers, and only those.
    for path in ("/no-such-page", "/no-such-page-either", "/whoami"):
        testlib.request(address, path, server_name=name)
    code, out = sh(servers, "fail2ban-regex /var/log/nginx/access.log /etc/fail2ban/filter.d/flaskdeploy-nginx.conf")
    assert code == 0 and "Failregex: 2 total" in out, out


def test_a_firewall_change_that_shuts_ssh_out_is_undone(runs):
    """A ruleset change after which no new SSH connection gets in (runs, with
    firewall_lockout) fails the run with a message, and the server loads the
    previous ruleset by itself; the next run, the rule gone, finds nothing to change
    (the rerun of test_the_next_run_changes_nothing)."""
    lockout = runs["lockout"]
    result = lockout["result"]
    assert result.returncode != 0
    assert "No new connection got in through the new firewall ruleset" in result.stdout, result.stdout[-3000:]
    assert lockout["ssh back"]
    # (read before the run: the file whole, no return to a ruleset armed)
    assert lockout["before read"] == (0, "inactive") and lockout["before"], lockout["before read"]
    assert lockout["after"] == lockout["before"]
    assert lockout["copies"] != 0  # no copy left (ls finds none)
    assert "inet mine" not in lockout["tables"] and "inet flaskdeploy" in lockout["tables"]
    assert "8080" not in lockout["ours"]
    assert testlib.recap(runs["rerun"].stdout, NAME)["changed"] == "0"


def test_a_first_run_that_logs_in_with_a_password_stops_before_turning_passwords_off(runs):
    """The run that logged in with the user's password (runs): it converged the rest,
    then stopped before the SSH settings, saying which variable keeps password
    logins; sshd still took passwords. The next run, with the key, turned them off
    (test_ssh_takes_keys_only_no_root_and_modern_algorithms)."""
    result = runs["password"]
    assert result.returncode != 0
    assert testlib.failed_task(result.stdout) == \
        "baseline : Check this run logged in with a key before turning password logins off", result.stdout[-3000:]
    assert "used password, not a key" in result.stdout, result.stdout[-3000:]
    assert "baseline_ssh_password_authentication: true" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    assert int(testlib.recap(result.stdout, NAME)["changed"]) > 0
    assert runs["after password"] == ("yes", False)
