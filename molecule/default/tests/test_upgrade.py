"""An upgrade: a server provisioned by the previous tagged version of this repository
(PREVIOUS, taken from the repository's own history with `git archive`) converges with
this tree, with the same inventory. It keeps serving throughout (every request sent
through nginx during the run is answered 200), keeps its release, its app's data and
its SECRET_KEY, and the next run changes nothing.

The server is a Debian 12 container of the scenarios' image on a network of its own,
its inventory the shape a user's is (an app server, the default https profile, a
data file the app user wrote in the app's instance folder). Both versions run under
mitogen, as the scenarios do.

CI runs this module as a job of its own (molecule/scripts/test.sh), beside the
scenarios; the default scenario's verify skips it (FLASKDEPLOY_UPGRADE_ELSEWHERE)."""

import os
import subprocess
import tarfile
import threading
import time

import pytest
import testlib

if os.environ.get("FLASKDEPLOY_UPGRADE_ELSEWHERE"):
    pytest.skip("run as a job of its own (FLASKDEPLOY_UPGRADE_ELSEWHERE)", allow_module_level=True)

# The previous tagged version, and the commit it names (for a clone that came
# without tags; a clone without that history cannot run this test and fails).
PREVIOUS = "v0.4.0"
PREVIOUS_COMMIT = "307e3a3"
NAME = "fd-upgrade"
SERVER_NAME = "upgrade.test"
NETWORK = "flaskdeploy-upgrade"
APP = "hello"


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory):
    """The previous version's files, as a clone of that tag has them."""
    path = tmp_path_factory.mktemp("previous")
    for ref in (PREVIOUS, PREVIOUS_COMMIT):
        archive = subprocess.run(["git", "-C", str(testlib.REPO), "archive", "--format=tar", ref],
                                 capture_output=True, timeout=120)
        if archive.returncode == 0:
            break
    else:
        pytest.fail(f"neither {PREVIOUS} nor {PREVIOUS_COMMIT} is in the repository's history:"
                    f" {archive.stderr.decode()[-500:]}")
    tar = path / "previous.tar"
    tar.write_bytes(archive.stdout)
    with tarfile.open(tar) as archive_file:
        archive_file.extractall(path / "tree", filter="tar")
    return path / "tree"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The container, and an inventory of it as a user's (written once, used by both
    versions)."""
    network = testlib.own_network(NETWORK)
    container = testlib.systemd_container(NAME, SERVER_NAME, network=NETWORK)
    # (the host baseline is tested in the cluster scenario and the first-run test)
    inventory = testlib.server_inventory(tmp_path_factory.mktemp("inventory") / "hosts.yml", NAME, SERVER_NAME,
                                         ansible_connection="docker", baseline_enabled=False)
    try:
        yield container, inventory
    finally:
        container.remove(force=True)
        if network:
            network.remove()


def converge(tree, inventory):
    env = dict(os.environ, ANSIBLE_CONFIG=str(tree / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(tree / "roles"),
               ANSIBLE_STRATEGY="mitogen_linear", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(["ansible-playbook", "-i", str(inventory), str(tree / "site.yml")],
                          capture_output=True, text=True, timeout=1200, env=env, cwd=tree)


def sh(container, command):
    result = container.exec_run(["sh", "-c", command])
    return result.exit_code, result.output.decode()


class Load(threading.Thread):
    """Requests to the site through nginx, one after the other, until stopped
    (bounded: at most `limit` requests, and `seconds`)."""

    def __init__(self, address, limit=20000, seconds=900):
        super().__init__(daemon=True)
        self.address, self.limit, self.deadline = address, limit, time.monotonic() + seconds
        self.answers, self.failures, self.stopped = 0, [], threading.Event()

    def run(self):
        while not self.stopped.is_set() and self.answers + len(self.failures) < self.limit \
                and time.monotonic() < self.deadline:
            try:
                status = testlib.request(self.address, "/", server_name=SERVER_NAME, timeout=10).status
            except OSError as error:
                status = repr(error)
            if status == 200:
                self.answers += 1
            else:
                self.failures.append(status)
            time.sleep(0.05)


def test_a_server_of_the_previous_version_upgrades_while_serving(server, old_tree):
    container, inventory = server
    address, _ = testlib.network_addresses(NAME)
    first = converge(old_tree, inventory)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert testlib.request(address, "/", server_name=SERVER_NAME).status == 200
    # What the server has before: its release, its secret, a file of the app's data.
    release = sh(container, f"readlink /srv/{APP}/current")[1].strip()
    secret = sh(container, f"sha256sum /etc/{APP}/secret.env")[1].split()[0]
    code, out = sh(container, f"runuser -u {APP} -- sh -c 'echo kept > /var/lib/{APP}/shared/instance/upgrade.txt'")
    assert code == 0, out

    load = Load(address)
    load.start()
    try:
        upgrade = converge(testlib.REPO, inventory)
    finally:
        load.stopped.set()
        load.join()
    assert upgrade.returncode == 0, upgrade.stdout[-4000:] + upgrade.stderr[-2000:]
    assert load.answers > 100 and load.failures == [], (load.answers, load.failures[:10])
    assert sh(container, f"test -d /srv/{APP}/{release}")[0] == 0, f"the release before, {release}, is gone"
    assert sh(container, f"readlink /srv/{APP}/current")[1].strip() == release
    assert sh(container, f"sha256sum /etc/{APP}/secret.env")[1].split()[0] == secret
    assert sh(container, f"cat /var/lib/{APP}/shared/instance/upgrade.txt")[1].strip() == "kept"
    assert testlib.request(address, "/", server_name=SERVER_NAME).status == 200

    again = converge(testlib.REPO, inventory)
    assert again.returncode == 0, again.stdout[-4000:]
    assert testlib.recap(again.stdout, NAME)["changed"] == "0", testlib.changed_tasks(again.stdout)
