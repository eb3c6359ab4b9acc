"""Deploys and rollbacks: playbooks/deploy.yml and playbooks/rollback.yml.

The tests run in file order against one converged server (sample_app 1.0.0). Each
deploy takes a copy of sample_app/ made on the controller with another version,
some broken on purpose. Load loops send requests through nginx over HTTPS while a
release switches and count every failed or non-2xx answer.
"""

import json
from pathlib import Path

import pytest
import testlib

testinfra_hosts = ["ansible://fd-deploy-debian12"]

APP = "hello"
LIMIT = "fd-deploy-debian12"
ROOT = f"/srv/{APP}"
SAMPLE = testlib.REPO / "sample_app"

# Release ids by version, filled in as the tests deploy them.
RELEASES = {}


def make_version(tmp_path_factory, version, replace=(), requirements_extra=""):
    """A copy of sample_app/ that reports `version`, with text replacements in hello/."""
    return testlib.sample_app_copy(tmp_path_factory.mktemp(f"v{version}") / "app", version,
                                   replace, requirements_extra)


def failed_release(result):
    """The release a failed deploy switched to (and back from), as its message names it."""
    import re

    return re.search(r"after the switch\s+to release (\w+)", result.stdout).group(1)


def deploy(path, **extra):
    return testlib.run_playbook("playbooks/deploy.yml", LIMIT, {"app_source_path": path, **extra})


def rollback(**extra):
    return testlib.run_playbook("playbooks/rollback.yml", LIMIT, extra)


def state(host):
    return json.loads(host.check_output(f"/usr/local/sbin/flaskdeploy-release state {ROOT}"))


def master(host):
    return testlib.main_pid(host, f"{APP}.service")


@pytest.fixture
def version(https):
    def _version():
        return https("/version").json()

    return _version


@pytest.fixture
def load(https):
    """A load loop through nginx: a few concurrent clients, bounded in count and time."""

    def _load():
        return testlib.LoadLoop(lambda: https("/version"), clients=4, max_requests=100000,
                                max_seconds=240, label=lambda r: r.json()["version"])

    return _load


def assert_clean(loop, *versions):
    """No request failed, and the loop ran across the switch: it saw the old and the
    new release (run_under_load: 200 requests before the action, and 200 answers from
    the new release after it; no minimum of requests in all, which a quick rollback
    on a fast machine missed)."""
    assert loop.failures == [], loop
    assert set(versions) <= set(loop.seen), loop


def test_converged_release_layout(host, version):
    current = state(host)["current"]
    RELEASES["1.0.0"] = current
    assert version() == {"version": "1.0.0", "release": current}
    assert host.file(f"{ROOT}/current").linked_to == f"{ROOT}/releases/{current}"
    release = host.file(f"{ROOT}/releases/{current}")
    assert release.user == "root" and release.mode == 0o755
    venv = host.file(f"{ROOT}/releases/{current}/venv")
    assert venv.is_symlink and venv.linked_to.startswith(f"{ROOT}/venvs/")
    assert host.file(f"{venv.linked_to}/.complete").exists
    assert host.file(f"{ROOT}/releases/{current}/REVISION").content_string.startswith(current + " path ")


def websocket(https_cert):
    """A WebSocket to the app's echo through nginx over TLS."""
    return testlib.WebSocket(testlib.network_addresses(LIMIT)[0], "/ws", "deploy.test", https_cert, timeout=20)


def test_deploy_v2_reloads_gracefully_under_load(host, tmp_path_factory, load, version, server_cert):
    """A code-only deploy under load: no request fails, the master stays. A WebSocket
    open across it (wsgi_long_lived: gunicorn's threaded worker) is still served by
    its old worker after the reload (HUP), past wsgi_graceful_timeout (8 s here), and
    the worker is stopped by wsgi_timeout (10 s) more; the client's new one gets the
    new release; no worker is left over."""
    import threading
    import time

    path = make_version(tmp_path_factory, "2.0.0")
    before = master(host)
    old_venv = host.file(f"{ROOT}/current/venv").linked_to
    ws = websocket(server_cert)
    assert ws.status == 101, ws
    opened = time.time()
    answers, closed_at = [], []

    def ping():
        """A message every half second, each answer with its time, until the close."""
        try:
            for n in range(600):  # bounded: 5 minutes
                ws.send(f"ping {n}")
                answers.append((time.time(), ws.receive()))
                time.sleep(0.5)
        except (ConnectionError, OSError):
            closed_at.append(time.time())

    pinger = threading.Thread(target=ping, daemon=True)
    pinger.start()
    loop = load()
    result = testlib.run_under_load(loop, lambda: deploy(path), until_seen="2.0.0")
    assert result.returncode == 0, result.stdout[-3000:]
    print("deploy v2 under load:", loop)
    assert_clean(loop, "1.0.0", "2.0.0")
    pinger.join(timeout=45)
    ws.close()
    assert closed_at, "the WebSocket was not closed within 45 s of the deploy's end"
    # gunicorn logs the reload; the socket's worker went on serving it, then was stopped.
    hup = float(host.check_output(f"journalctl -u {APP}.service -o short-unix --no-pager"
                                  " | grep 'Handling signal: hup' | tail -1").split()[0])
    assert any(when > hup + 1 and text.startswith("1.0.0: ") for when, text in answers), (hup, answers[-5:])
    # The old worker takes nothing new after the reload and ends its loop at
    # wsgi_graceful_timeout, but the thread holding the socket keeps its process up
    # (still answering) until the master stops it, wsgi_timeout later.
    print(f"the WebSocket closed {closed_at[0] - hup:.1f} s after the reload")
    assert 8 <= closed_at[0] - hup <= 8 + 10 + 4, (opened, hup, closed_at)
    again = websocket(server_cert)
    try:
        assert again.status == 101, again
        again.send("after")
        assert again.receive() == "2.0.0: after"
    finally:
        again.close()
    assert len(testlib.child_pids(host, master(host))) == 2  # wsgi_workers: the old one is gone
    assert version()["version"] == "2.0.0"
    RELEASES["2.0.0"] = version()["release"]
    # Code only: same virtualenv, same gunicorn master (HUP, not a restart).
    assert master(host) == before
    assert host.file(f"{ROOT}/current/venv").linked_to == old_venv
    assert host.file(f"{ROOT}/previous").linked_to == f"{ROOT}/releases/{RELEASES['1.0.0']}"


def test_deploying_the_same_code_again_changes_nothing(tmp_path_factory, host):
    before = master(host)

    def archive():
        """The server's archive of the staged code: a copy is a new file (a rename)."""
        return host.check_output(f"stat -c '%i %y' {ROOT}/staging/path.tar.gz")

    copied = archive()
    # The same code at a new path (new modification times): staged again, no change.
    path = make_version(tmp_path_factory, "2.0.0")
    result = deploy(path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert testlib.recap(result.stdout, LIMIT)["changed"] == "0"
    assert testlib.task_status(result.stdout, "app : Stage the code tree") == "ok"
    # Packed into the same bytes: nothing copied.
    assert archive() == copied
    # The same tree again: its stamp matches, nothing is copied.
    result = deploy(path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert testlib.recap(result.stdout, LIMIT)["changed"] == "0"
    assert testlib.task_status(result.stdout, "app : Stage the code tree") == "skipping"
    assert archive() == copied
    assert master(host) == before


@pytest.mark.parametrize(
    "name, replace, message",
    [
        ("import", [("import os\n", "import os\nraise ImportError('broken on purpose')\n")],
         "broken on purpose"),
        ("health", [('    def healthz():\n', '    def healthz():\n        return "sick", 500\n')],
         "answered 500 on /healthz"),
    ],
)
def test_broken_release_fails_before_the_switch(host, tmp_path_factory, load, version, name,
                                                replace, message):
    before = (state(host)["current"], master(host), [r["id"] for r in state(host)["releases"]])
    path = make_version(tmp_path_factory, f"3.0.0-{name}", replace)
    loop = load()
    result = testlib.run_under_load(loop, lambda: deploy(path))
    assert result.returncode != 0
    assert message in result.stdout
    assert "Check in-process that the release answers /healthz" in result.stdout
    assert "Point current at the release" not in result.stdout
    assert loop.failures == [], loop
    # Nothing switched, nothing restarted, and the failed release is not kept.
    assert (state(host)["current"], master(host), [r["id"] for r in state(host)["releases"]]) == before
    assert version()["version"] == "2.0.0"


def test_release_failing_only_when_served_is_switched_back(host, tmp_path_factory, version):
    # Healthy in-process, 500 under gunicorn: the probe after the switch catches it.
    path = make_version(tmp_path_factory, "4.0.0", [(
        '    def healthz():\n',
        '    def healthz():\n'
        '        if request.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn"):\n'
        '            return "sick under gunicorn", 500\n',
    )])
    result = deploy(path, wsgi_probe_timeout=5)
    assert result.returncode != 0
    RELEASES["4.0.0"] = failed_release(result)  # it served (and failed) briefly
    assert "Switch back to the release that served before" in result.stdout
    assert f"release {RELEASES['2.0.0']} serves again" in result.stdout
    assert state(host)["current"] == RELEASES["2.0.0"]
    assert version()["version"] == "2.0.0"
    # previous is still the release before 2.0.0, not the one that failed: a
    # rollback goes there.
    assert state(host)["previous"] == RELEASES["1.0.0"]


def test_release_whose_server_cannot_start_is_switched_back(host, tmp_path_factory, version):
    # A virtualenv without gunicorn (app_venv_packages emptied): the restart fails.
    before = master(host)
    result = deploy(make_version(tmp_path_factory, "4.1.0"), app_venv_packages=[])
    assert result.returncode != 0
    assert "did not start or answer" in result.stdout
    assert f"release {RELEASES['2.0.0']} serves again" in result.stdout
    assert state(host)["current"] == RELEASES["2.0.0"]
    assert version()["version"] == "2.0.0"
    assert master(host) != before  # restarted on the release that served before
    RELEASES["4.1.0"] = failed_release(result)
    assert state(host)["previous"] == RELEASES["1.0.0"]


SANDBOX_FIELDS = "^(NoNewPrivs|Seccomp|Seccomp_filters|CapEff|CapPrm|CapBnd|CapAmb):"


def sandbox_of(host, pid):
    """What the kernel says of a process's sandbox: no new privileges, its seccomp
    filter, its capabilities."""
    return host.check_output(f"grep -E '{SANDBOX_FIELDS}' /proc/{pid}/status")


def sandbox_probe(path):
    """Shell commands that record the running step's sandbox at `path` and try to
    write outside the data directory (each attempt must fail)."""
    return (f"grep -E '{SANDBOX_FIELDS}' /proc/self/status > {path}; "
            f"for f in {ROOT}/escaped /etc/escaped /usr/local/escaped; do "
            f"touch $f 2>/dev/null && echo wrote $f >> {path}; done; true")


def test_migration_hook_runs_in_the_new_release(host, tmp_path_factory, version):
    """As the app user, with its environment, in the new release, under the service's
    sandbox (as the in-process check, which imports the app, is: this version's
    create_app records its own sandbox when the release tool's check runs it)."""
    marker = f"/var/lib/{APP}/migrated"
    command = ("python -c \"import hello, pathlib; "
               f"pathlib.Path('{marker}').write_text(hello.__version__)\"; "
               + sandbox_probe(f"/var/lib/{APP}/migrate-sandbox"))
    checked = f"/var/lib/{APP}/check-sandbox"
    path = make_version(tmp_path_factory, "5.0.0", [(
        "def create_app(config=None):\n",
        "def create_app(config=None):\n"
        "    if b'flaskdeploy-release' in Path('/proc/self/cmdline').read_bytes():\n"
        f"        os.system({sandbox_probe(checked)!r})\n",
    )])
    host.check_output(f"rm -f /var/lib/{APP}/migrate-sandbox {checked}")
    result = deploy(path, app_migrate_command=command)
    assert result.returncode == 0, result.stdout[-3000:]
    assert host.file(marker).content_string == "5.0.0"
    assert host.file(marker).user == APP  # run as the app user, with its environment
    assert version()["version"] == "5.0.0"
    RELEASES["5.0.0"] = version()["release"]
    service = sandbox_of(host, master(host))
    assert "NoNewPrivs:\t1" in service and "Seccomp:\t2" in service and "CapEff:\t0000000000000000" in service
    for step in ("migrate-sandbox", "check-sandbox"):
        assert host.file(f"/var/lib/{APP}/{step}").content_string == service + "\n", step
    for escaped in (f"{ROOT}/escaped", "/etc/escaped", "/usr/local/escaped"):
        assert not host.file(escaped).exists


def test_failing_migration_aborts_the_deploy(host, tmp_path_factory, version):
    result = deploy(make_version(tmp_path_factory, "5.1.0"), app_migrate_command="echo no; exit 3")
    assert result.returncode != 0
    assert "Run the migration command in the new release" in result.stdout
    assert state(host)["current"] == RELEASES["5.0.0"]
    assert version()["version"] == "5.0.0"


def test_new_requirements_restart_on_a_new_virtualenv_under_load(host, tmp_path_factory, load,
                                                                 version):
    old_venv = host.file(f"{ROOT}/current/venv").linked_to
    before = master(host)
    path = make_version(tmp_path_factory, "6.0.0", requirements_extra="# v6: a new virtualenv\n")
    loop = load()
    result = testlib.run_under_load(loop, lambda: deploy(path), until_seen="6.0.0")
    assert result.returncode == 0, result.stdout[-3000:]
    print("deploy v6 (new virtualenv) under load:", loop)
    assert_clean(loop, "5.0.0", "6.0.0")
    assert host.file(f"{ROOT}/current/venv").linked_to != old_venv
    assert master(host) != before  # a new virtualenv needs a new process
    RELEASES["6.0.0"] = version()["release"]


def test_rollback_to_the_previous_release_under_load(host, load, version):
    loop = load()
    result = testlib.run_under_load(loop, rollback, until_seen="5.0.0")
    assert result.returncode == 0, result.stdout[-3000:]
    print("rollback under load:", loop)
    assert_clean(loop, "6.0.0", "5.0.0")
    assert version() == {"version": "5.0.0", "release": RELEASES["5.0.0"]}


def test_rollback_to_a_named_release(host, version):
    result = rollback(app_rollback_to=RELEASES["1.0.0"])
    assert result.returncode == 0, result.stdout[-3000:]
    assert version() == {"version": "1.0.0", "release": RELEASES["1.0.0"]}
    assert state(host)["previous"] == RELEASES["5.0.0"]


def test_rollback_to_an_unknown_release_changes_nothing(host, version):
    result = rollback(app_rollback_to="0000deadbeef")
    assert result.returncode != 0
    assert "No release '0000deadbeef' to roll back to" in result.stdout
    assert testlib.recap(result.stdout, LIMIT)["changed"] == "0"
    assert version()["version"] == "1.0.0"


def test_old_releases_and_virtualenvs_are_pruned(host, tmp_path_factory, version):
    kept = {r["id"] for r in state(host)["releases"]}
    # v1, v2, v4 and v4.1 (served briefly, switched back), v5 and v6 (its own
    # virtualenv); the releases that failed before the switch are gone.
    assert kept == {RELEASES[v] for v in ("1.0.0", "2.0.0", "4.0.0", "4.1.0", "5.0.0", "6.0.0")}
    # (v7 has a file the next test's release no longer has.)
    tree = make_version(tmp_path_factory, "7.0.0")
    Path(tree, "hello", "extra.txt").write_text("only in 7.0.0\n")
    result = deploy(tree, app_releases_keep=2)
    assert result.returncode == 0, result.stdout[-3000:]
    assert host.file(f"{ROOT}/current/hello/extra.txt").exists
    releases = state(host)["releases"]
    # The newest two: v7 (current) and v1 (previous, the rollback target); and, until
    # the next deploy, v5, previous before this switch (had the probe failed, the
    # switch back would have made it previous again).
    assert [r["id"] for r in releases] == [version()["release"], RELEASES["1.0.0"], RELEASES["5.0.0"]]
    used = {r["venv"] for r in releases}
    venvs = {f"{ROOT}/venvs/{name}" for name in host.file(f"{ROOT}/venvs").listdir()}
    assert venvs == used and len(venvs) == 1  # v6's virtualenv went with v6


def test_a_build_step_runs_in_the_new_release_before_it_serves(host, tmp_path_factory, https, version):
    """app_build_command: as the app user, in the new release, with its virtualenv; what
    it builds is served (here a static file through nginx), and the release is sealed
    (root's again) before it is checked and switched to. The file v7 had and this
    tree has not is not in the release (a new tree, not an update of the old)."""
    build = ("python -c \"import flask, pathlib; pathlib.Path('hello/static/built.txt')"
             ".write_text('built by ' + __import__('getpass').getuser() + ' with flask ' + flask.__version__)\"")
    result = deploy(make_version(tmp_path_factory, "9.0.0"), app_build_command=build)
    assert result.returncode == 0, result.stdout[-3000:]
    assert version()["version"] == "9.0.0"
    resp = https("/static/built.txt")
    assert resp.status == 200 and resp.text.startswith(f"built by {APP} with flask 3.")
    built = host.file(f"{ROOT}/current/hello/static/built.txt")
    assert (built.user, host.file(f"{ROOT}/current").user) == ("root", "root")
    assert host.run(f"/usr/local/sbin/{APP}-run touch {ROOT}/current/hello/static/x").rc != 0
    assert not host.file(f"{ROOT}/current/hello/extra.txt").exists


def test_a_failing_build_step_aborts_with_its_output_and_the_old_release_serves(host, tmp_path_factory, version):
    before = state(host)
    result = deploy(make_version(tmp_path_factory, "9.1.0"),
                    app_build_command="echo compiling-translations; echo 'no such locale' >&2; exit 4")
    assert result.returncode != 0
    assert "Run the build command in the new release failed" in result.stdout
    assert "compiling-translations" in result.stdout and "no such locale" in result.stdout
    assert version()["version"] == "9.0.0"
    after = state(host)
    assert (after["current"], [r["id"] for r in after["releases"]]) == (before["current"], [r["id"] for r in before["releases"]])


def test_check_mode_with_staged_code_no_release_was_made_of_changes_nothing(host, tmp_path_factory, version):
    """The failed build above left its code staged, with no release made of it: a
    check-mode run plans that release, previews it (no create in check mode) and
    changes nothing (it stopped on the create step's empty output before)."""
    before = (state(host), master(host))
    result = testlib.run_playbook("playbooks/deploy.yml", LIMIT,
                                  {"app_source_path": make_version(tmp_path_factory, "3.0.0")}, options=["--check"])
    assert result.returncode == 0, result.stdout[-3000:]
    assert (state(host), master(host)) == before
    assert version()["version"] == "9.0.0"


def test_a_hostile_build_cannot_steer_root(host, tmp_path_factory, version):
    """A build command doing what a malicious dependency's build script would: copy
    the virtualenv into the data directory, plant a .pth there that acts when root
    runs that Python, point the release's venv link at it, leave a set-uid copy of a
    shell, and try to write outside its build. The release root makes of it links
    root's virtualenv, holds nothing of the app user's and no set-uid file; root
    running the release's Python (as the gunicorn config check does) runs no code of
    the build's; the build ran under the service's sandbox."""
    evil = f"/var/lib/{APP}/evil-venv"
    pwned = "/etc/flaskdeploy-pwned"
    build = (f"cp -a \"$(readlink -f venv)\" {evil}; "
             f"site=$({evil}/bin/python -c 'import sysconfig; print(sysconfig.get_path(\"purelib\"))'); "
             f"echo 'import os; os.getuid() == 0 and open(\"{pwned}\", \"w\").write(\"root ran the build\")'"
             " > $site/zz-evil.pth; "
             f"rm venv && ln -s {evil} venv; cp /bin/dash hello/rootsh; chmod 4777 hello/rootsh || chmod 0777 hello/rootsh; "
             + sandbox_probe("hello/static/sandbox.txt"))
    host.check_output(f"rm -rf {evil} {pwned}")
    try:
        result = deploy(make_version(tmp_path_factory, "13.0.0"), app_build_command=build)
        assert result.returncode == 0, result.stdout[-3000:]
        assert version()["version"] == "13.0.0"
        release = f"{ROOT}/releases/{version()['release']}"
        # The attack was real: the build's venv and its .pth are there, and root running
        # that Python would have run the build's code.
        assert host.file(f"{evil}/bin/python").exists
        assert host.run(f"{evil}/bin/python -c pass").rc == 0 and host.file(pwned).exists
        host.check_output(f"rm -f {pwned}")
        assert host.file(f"{release}/venv").linked_to.startswith(f"{ROOT}/venvs/")
        assert host.check_output(f"find {release}/ ! -user root -printf '%p\\n'") == ""
        assert host.check_output(f"find {release}/ -perm /6022 ! -type l -printf '%p\\n'") == ""
        assert host.file(f"{release}/hello/rootsh").mode == 0o755
        assert host.file(f"{release}/.sealed").content_string == version()["release"] + "\n"
        host.check_output(f"{ROOT}/current/venv/bin/python -c pass")
        assert not host.file(pwned).exists
        assert host.check_output(f"ls {ROOT}/build") == ""
        # The build's sandbox is the service's, and it wrote nowhere outside its build.
        assert host.file(f"{release}/hello/static/sandbox.txt").content_string == sandbox_of(host, master(host)) + "\n"
        for escaped in (f"{ROOT}/escaped", "/etc/escaped", "/usr/local/escaped"):
            assert not host.file(escaped).exists
    finally:
        host.check_output(f"rm -rf {evil} {pwned}")


def test_a_malicious_dependency_runs_as_the_app_user_never_as_root(host, tmp_path_factory, version):
    """A dependency doing what a malicious one would: its setup.py (run by pip while
    the virtualenv is built, from a directory in the code: built in place) records
    who runs it and tries to write outside, and it installs a .pth file that acts
    whenever root runs that Python. pip ran it as the app user under the service's
    sandbox, the virtualenv is root's, and neither the deploy nor a site.yml run that
    checks a rewritten gunicorn.conf.py (with the virtualenv's gunicorn) runs the
    .pth as root."""
    pwned, record = "/etc/flaskdeploy-pwned-by-dependency", f"/var/lib/{APP}/dependency-build"
    setup_py = (
        "import os\n"
        "from setuptools import setup\n"
        "from setuptools.command.build_py import build_py\n"
        f"open({record!r}, 'w').write('%d\\n' % os.getuid())\n"
        f"os.system({sandbox_probe(record + '-sandbox')!r})\n"
        "class BuildPy(build_py):\n"
        "    def run(self):\n"
        "        super().run()\n"
        "        with open(os.path.join(self.build_lib, 'zz_dependency.pth'), 'w') as handle:\n"
        f"            handle.write(\"import os; os.getuid() == 0 and open({pwned!r}, 'w').write('root ran it')\\n\")\n"
        "setup(name='evil-dependency', version='1.0', py_modules=['evil_dependency'],\n"
        "      cmdclass={'build_py': BuildPy})\n")
    tree = Path(make_version(tmp_path_factory, "13.1.0",
                             requirements_extra="./vendor/evil-dependency\n"))
    (tree / "vendor" / "evil-dependency").mkdir(parents=True)
    (tree / "vendor" / "evil-dependency" / "setup.py").write_text(setup_py)
    (tree / "vendor" / "evil-dependency" / "evil_dependency.py").write_text("")
    escapes = (f"{ROOT}/escaped", "/etc/escaped", "/usr/local/escaped")
    host.check_output(f"rm -f {pwned} {record} {record}-sandbox {' '.join(escapes)}")
    try:
        result = deploy(str(tree))
        assert result.returncode == 0, result.stdout[-3000:]
        assert version()["version"] == "13.1.0"
        # The build code ran as the app user, under the service's sandbox, writing nowhere else.
        assert host.file(record).content_string == f"{host.user(APP).uid}\n"
        assert host.file(record + "-sandbox").content_string == sandbox_of(host, master(host)) + "\n"
        for escaped in escapes:
            assert not host.file(escaped).exists
        venv = host.file(f"{ROOT}/current/venv").linked_to
        assert host.check_output(f"find {venv}/ ! -user root -printf '%p\\n'") == ""
        assert host.check_output(f"find {venv}/ -perm /6022 ! -type l -printf '%p\\n'") == ""
        assert host.check_output(f"find {venv}/ -path '*/flask/__pycache__/app.*.pyc' -printf x") == "x"
        assert not host.file(pwned).exists
        # The attack is real: root running that Python would run the dependency's code.
        host.check_output(f"{venv}/bin/python -c pass")
        assert host.file(pwned).exists
        host.check_output(f"rm -f {pwned}")
        # The gunicorn config check runs that gunicorn: as the app user.
        host.check_output(f"rm /etc/{APP}/gunicorn.conf.py")
        result = testlib.run_playbook("site.yml", LIMIT, {"app_source_path": str(tree)})
        assert result.returncode == 0, result.stdout[-3000:]
        assert testlib.task_status(result.stdout, "wsgi : Write gunicorn.conf.py") == "changed"
        assert host.file(f"/etc/{APP}/gunicorn.conf.py").exists
        assert not host.file(pwned).exists
        assert version()["version"] == "13.1.0"
    finally:
        host.check_output(f"rm -f {pwned} {record} {record}-sandbox {' '.join(escapes)}")


def test_a_virtualenv_from_pyproject_toml_or_exactly_uv_lock(host, tmp_path_factory, version):
    """What the code declares makes the virtualenv (uv, by default): an app with only a
    pyproject.toml gets its [project] dependencies; one with a uv.lock (or the same
    lock as a pylock.toml) gets exactly the locked versions (Flask 3.0.3, locked while
    pyproject.toml pinned it, then kept by `uv lock` under the range Flask>=3.0,<4
    that a fresh resolution answers with 3.1);
    a uv.lock that no longer matches its pyproject.toml fails the deploy before any
    change, naming the cause."""
    import subprocess
    import tomllib

    def installed(name):
        return host.check_output(f"{ROOT}/current/venv/bin/python -c "
                                 f"'import importlib.metadata as m; print(m.version(\"{name}\"))'")

    pyproject_only = Path(make_version(tmp_path_factory, "13.2.0"))
    (pyproject_only / "requirements.txt").unlink()
    result = deploy(str(pyproject_only))
    assert result.returncode == 0, result.stdout[-3000:]
    assert version()["version"] == "13.2.0"
    assert installed("flask-sock").startswith("0.")

    locked = Path(make_version(tmp_path_factory, "13.3.0"))
    (locked / "requirements.txt").unlink()
    pyproject = (locked / "pyproject.toml").read_text()
    assert '"Flask>=3.0,<4"' in pyproject
    (locked / "pyproject.toml").write_text(pyproject.replace('"Flask>=3.0,<4"', '"Flask==3.0.3"'))
    subprocess.run(["uv", "lock", "--quiet"], cwd=locked, check=True)
    (locked / "pyproject.toml").write_text(pyproject)
    subprocess.run(["uv", "lock", "--quiet"], cwd=locked, check=True)
    lock = {p["name"]: p["version"] for p in tomllib.loads((locked / "uv.lock").read_text())["package"]}
    assert lock["flask"] == "3.0.3"
    result = deploy(str(locked))
    assert result.returncode == 0, result.stdout[-3000:]
    assert version()["version"] == "13.3.0"
    for name in ("flask", "werkzeug", "flask-sock", "jinja2"):
        assert installed(name) == lock[name], name

    # The same lock as PEP 751's pylock.toml (uv export): the same versions, the WSGI
    # server installed beside them without moving one.
    pylock = Path(make_version(tmp_path_factory, "13.3.1"))
    (pylock / "requirements.txt").unlink()
    (pylock / "uv.lock").write_bytes((locked / "uv.lock").read_bytes())
    (pylock / "pyproject.toml").write_text((locked / "pyproject.toml").read_text())
    subprocess.run(["uv", "export", "--quiet", "--frozen", "--no-dev", "--no-emit-project", "--format", "pylock.toml",
                    "-o", "pylock.toml"], cwd=pylock, check=True)
    (pylock / "uv.lock").unlink()
    result = deploy(str(pylock))
    assert result.returncode == 0, result.stdout[-3000:]
    assert version()["version"] == "13.3.1"
    for name in ("flask", "werkzeug", "flask-sock", "jinja2"):
        assert installed(name) == lock[name], name
    assert installed("gunicorn")

    serving = version()
    stale = Path(make_version(tmp_path_factory, "13.4.0"))
    (stale / "requirements.txt").unlink()
    (stale / "uv.lock").write_bytes((locked / "uv.lock").read_bytes())
    (stale / "pyproject.toml").write_text(pyproject.replace('"flask-sock', '"itsdangerous>=2", "flask-sock'))
    result = deploy(str(stale))
    assert result.returncode != 0
    assert testlib.failed_task(result.stdout) == "app : Install the requirements into a new virtualenv", \
        result.stdout[-3000:]
    assert "needs to be updated" in result.stdout, result.stdout[-3000:]
    assert version() == serving
    assert host.check_output(f"ls -A {ROOT}/build") == ""


def test_the_app_cannot_make_root_follow_its_shared_directory(host, tmp_path_factory, version):
    """As the app user (what its code can do in its sandbox: the data directory is
    writable), `shared` replaced by a link to a root-owned directory. The next
    deploy changes nothing there (no owner, mode or content) and fails naming the
    path; the serving release stays. With `shared` back, the next deploy serves."""
    before_version = version()["version"]
    host.check_output("mkdir -p /opt/rootonly && chmod 0755 /opt/rootonly && echo keep > /opt/rootonly/file")
    listing = "stat -c '%n %U:%G %a %s' /opt/rootonly /opt/rootonly/*"
    before = host.check_output(listing)
    data = f"/var/lib/{APP}"
    host.check_output(f"runuser -u {APP} -- sh -c 'mv {data}/shared {data}/shared.mine && ln -s /opt/rootonly {data}/shared'")
    try:
        result = deploy(make_version(tmp_path_factory, "14.0.0"))
        assert host.check_output(listing) == before
        assert result.returncode != 0
        assert f"{data}/shared/instance" in result.stdout
        assert version()["version"] == before_version
    finally:
        host.check_output(f"runuser -u {APP} -- sh -c 'rm {data}/shared && mv {data}/shared.mine {data}/shared'")
        host.check_output("rm -rf /opt/rootonly")
    result = deploy(make_version(tmp_path_factory, "14.0.0"))
    assert result.returncode == 0, result.stdout[-3000:]
    assert version()["version"] == "14.0.0"


def test_a_service_failing_at_start_serves_again_once_the_cause_is_gone(host, tmp_path_factory, version):
    """A release whose app cannot start while something it needs is down (here: a
    file standing for a database that is down at import). systemd restarts it past
    its default start limit (5 starts in 10 s) instead of giving up, and it serves
    again as soon as the cause is gone (wsgi_restart_sec, StartLimitIntervalSec=0)."""
    down = f"/var/lib/{APP}/database-down"
    path = make_version(tmp_path_factory, "10.0.0", [(
        "def create_app(config=None):\n",
        "def create_app(config=None):\n"
        f"    if os.path.exists({down!r}):\n"
        "        raise RuntimeError('database down')\n",
    )])
    result = deploy(path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert version()["version"] == "10.0.0"
    host.check_output(f"touch {down}")
    try:
        host.run(f"systemctl restart {APP}.service")  # fails: the app cannot start
        testlib.wait_for(lambda: int(host.check_output(f"systemctl show -p NRestarts --value {APP}.service")) >= 7,
                         timeout=60, what="seven restarts")
        assert host.run(f"systemctl is-failed --quiet {APP}.service").rc != 0  # still trying
        assert host.run(f"systemctl is-failed --quiet {APP}.socket").rc != 0
    finally:
        host.check_output(f"rm -f {down}")
    # Within RestartSec (2 s) and a start of gunicorn; CI's loaded cores make that
    # start slow (a 30 s wait once timed out there).
    testlib.wait_for(lambda: version()["version"] == "10.0.0", timeout=90, what="the service back")


def test_a_deploy_killed_while_staging_leaves_no_mixed_tree(host, tmp_path_factory, version):
    """The controller killed (SIGKILL) once a new tree of many files is staged (its
    archive copied and unpacked), then what a kill in the middle of that unpacking
    would have left made of it by hand (the release tool drops the stamp of the
    staged tree first, unpacks into staging/path.new and puts it in place by renames:
    roles/app/tests), then the tree that serves deployed again: the release is that
    tree exactly, not a mix of the two."""
    tree_a = make_version(tmp_path_factory, "11.0.0")
    assert deploy(tree_a).returncode == 0
    release_a = state(host)["current"]
    tree_b = make_version(tmp_path_factory, "12.0.0")
    data = Path(tree_b) / "hello" / "data"
    data.mkdir()
    for i in range(300):  # many files: still one archive copied
        (data / f"{i:03}.txt").write_text(f"{i}\n")
    # (killed once tree b is staged, its archive copied and unpacked: what a kill in
    # the middle of that unpacking would have left is then made by hand)
    output = deploy_killed_at(tree_b, "app : Plan the release")
    assert testlib.task_status(output, "app : Stage the code tree") == "changed"
    staged = f"{ROOT}/staging/path"
    # (What a kill in the middle of the unpacking leaves: no stamp, part of a new tree.)
    host.run_expect([0], f"rm -f {staged}.stamp && mkdir -p {staged}.new/hello/data"
                         f" && echo 0 > {staged}.new/hello/data/000.txt")
    assert version()["version"] == "11.0.0"
    # The killed run still holds the deploy lock; the next run from this controller
    # sees its ansible-playbook gone and takes the lock over at once.
    assert host.file(f"{ROOT}/deploy.lock").exists
    result = deploy(tree_a)
    assert result.returncode == 0, result.stdout[-3000:]
    assert testlib.task_status(
        result.stdout, "app : Take over the deploy lock of a run that died on this controller") == "ok"
    assert not host.file(f"{ROOT}/deploy.lock").exists
    assert state(host)["current"] == release_a
    assert not host.file(f"{ROOT}/current/hello/data").exists
    assert not host.file(f"{staged}/hello/data").exists
    assert not host.file(f"{staged}.new").exists
    assert not [n for n in host.file(f"{ROOT}/releases").listdir() if n.endswith(".new")]


def deploy_killed_at(path, task, timeout=300, **extra):
    """deploy.yml of path, killed as the run reaches `task` (testlib.playbook_killed_at)."""
    return testlib.playbook_killed_at("playbooks/deploy.yml", LIMIT, {"app_source_path": path, **extra},
                                      task, timeout)


# The controller killed at each step of a deploy (staging: the test above), then the
# same deploy run again: every request is answered throughout, the rerun converges
# with the new release probed, and nothing half-made is left.
KILL_STEPS = {
    "venv": "app : Install the requirements into a new virtualenv",
    "create": "app : Create the release directory",
    "build": "app : Run the build command in the new release",
    "switch": testlib.SWITCH_TASK,
    "reload": "wsgi : Reload the WSGI server onto the new release",
    "probe": "wsgi : Check the WSGI server answers",
}


@pytest.mark.parametrize("step", list(KILL_STEPS))
def test_a_deploy_killed_at_any_step_is_finished_by_the_next_run(host, tmp_path_factory, load, version, step):
    number = 20 + list(KILL_STEPS).index(step)
    tree = make_version(tmp_path_factory, f"{number}.0.0",
                        requirements_extra=f"# a new virtualenv ({step})\n" if step == "venv" else "")
    # The build step: a run killed while the app user builds leaves a build of its
    # own, never a release (before, an unbuilt release the app user owned, which the
    # next run took as made and switched to).
    extra = {"app_build_command": "sleep 2; echo built > hello/static/built.txt"} if step == "build" else {}
    loop = load()
    with loop:
        testlib.wait_for(lambda: loop.sent > 100, what="load before the deploy")
        deploy_killed_at(tree, KILL_STEPS[step], **extra)
        result = deploy(tree, **extra)
        sent = loop.sent
        testlib.wait_for(lambda: loop.sent > sent + 100, what="load after the rerun")
    assert result.returncode == 0, result.stdout[-3000:]
    print(f"killed at {step}, then rerun:", loop)
    assert loop.failures == [], loop
    assert version()["version"] == f"{number}.0.0"
    after = state(host)
    assert after["probed"] == after["current"] == version()["release"]
    if step in ("reload", "probe"):
        # Switched by the killed run: the rerun has nothing to switch, yet serves the
        # release it probed, not the code the workers had loaded before.
        assert testlib.task_status(result.stdout, testlib.SWITCH_TASK) in (None, "skipping")
        # (named, so that a renamed task cannot make the line above pass unseen)
        assert testlib.task_status(result.stdout, "app : Switch to the release") == "skipping"
        assert testlib.task_status(result.stdout, "wsgi : Reload the WSGI server onto the new release") == "changed"
    assert not host.file(f"{ROOT}/deploy.lock").exists
    assert not [n for n in host.file(f"{ROOT}/releases").listdir() if n.endswith(".new")]
    if step == "build":
        release = f"{ROOT}/releases/{after['current']}"
        assert host.file(f"{release}/hello/static/built.txt").content_string == "built\n"
        assert host.file(f"{release}/.sealed").exists
        assert host.check_output(f"find {release}/ ! -user root -printf '%p\\n'") == ""
        assert host.check_output(f"ls -A {ROOT}/build") == ""
    assert host.file(f"{ROOT}/staging/path.stamp").exists
    assert host.file(f"{ROOT}/venvs").listdir() and all(
        host.file(f"{ROOT}/venvs/{v}/.complete").exists for v in host.file(f"{ROOT}/venvs").listdir())


def test_a_reboot_between_switch_and_probe_serves_the_probed_release(host, tmp_path_factory, version):
    """The host rebooted while a deploy had switched `current` but not probed it: at
    boot the probed release serves (not the unprobed one), and the rerun deploys and
    probes the new release."""
    serving = version()
    tree = make_version(tmp_path_factory, "30.0.0")
    deploy_killed_at(tree, KILL_STEPS["reload"])
    switched = state(host)
    assert switched["current"] != switched["probed"] == serving["release"]
    testlib.reboot(LIMIT)
    testlib.wait_for(lambda: version() == serving, timeout=60, what="the probed release to serve")
    booted = state(host)
    assert booted["current"] == booted["probed"] == serving["release"]
    assert host.service("hello-release-boot.service").is_enabled
    result = deploy(tree)
    assert result.returncode == 0, result.stdout[-3000:]
    assert version()["version"] == "30.0.0"
    after = state(host)
    assert after["current"] == after["probed"] == version()["release"]


def test_two_deploys_at_once_run_one_after_the_other(host, tmp_path_factory, load, version):
    """Two deploy.yml runs started together: the deploy lock lets one stage, build,
    switch and probe while the other waits; then the other deploys. Both succeed,
    the second's release serves, probed, and every request is answered meanwhile."""
    import concurrent.futures

    trees = {v: make_version(tmp_path_factory, v) for v in ("14.0.0", "15.0.0")}
    loop = load()

    def both():
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = {v: pool.submit(deploy, tree) for v, tree in trees.items()}
            return {v: f.result() for v, f in futures.items()}

    results = testlib.run_under_load(loop, both, after=100)
    for result in results.values():
        assert result.returncode == 0, result.stdout[-3000:]
    import re

    retrying = re.compile(r"^FAILED - RETRYING: \[%s\]: .*Take the deploy lock \(" % LIMIT, re.M)
    waited = [v for v, r in results.items() if retrying.search(r.stdout)]
    assert len(waited) == 1, {v: r.stdout[-2000:] for v, r in results.items()}
    first = ({"14.0.0", "15.0.0"} - set(waited)).pop()
    print("two deploys at once:", loop)
    assert loop.failures == [], loop
    assert {first, waited[0]} <= set(loop.seen), loop  # the first served, then the second
    assert version()["version"] == waited[0]
    current = state(host)
    assert current["probed"] == current["current"] == version()["release"]
    assert current["previous"] and host.file(f"{ROOT}/releases/{current['previous']}/REVISION").exists
    assert not host.file(f"{ROOT}/deploy.lock").exists
    assert not [n for n in host.file(f"{ROOT}/releases").listdir() if n.endswith(".new")]


def test_a_deploy_lock_held_elsewhere_is_waited_for_then_named(host, tmp_path_factory, version):
    """A lock held by a run on another controller: the deploy waits
    app_deploy_lock_wait seconds, then fails naming the holder and how to free it,
    having changed nothing; once freed, the deploy goes through."""
    import time

    serving = version()
    lock = {"run": "laptop:4242:1", "controller": "laptop", "pid": 4242, "started": "1", "user": "ann",
            "since": time.time() - 30, "expires": time.time() + 3600}
    import shlex

    written = testlib.container(LIMIT).exec_run(["sh", "-c", f"printf %s {shlex.quote(json.dumps(lock))} > {ROOT}/deploy.lock"])
    assert written.exit_code == 0, written.output
    tree = make_version(tmp_path_factory, "16.0.0")
    result = deploy(tree, app_deploy_lock_wait=5)
    assert result.returncode != 0
    assert "Another deploy holds /srv/hello/deploy.lock: ann@laptop, ansible-playbook pid 4242" in result.stdout
    assert f"sudo /usr/local/sbin/flaskdeploy-release unlock {ROOT}" in result.stdout
    assert testlib.recap(result.stdout, LIMIT)["changed"] == "0"
    assert version() == serving
    assert json.loads(host.file(f"{ROOT}/deploy.lock").content_string)["run"] == lock["run"]
    host.run_expect([0], f"/usr/local/sbin/flaskdeploy-release unlock {ROOT}")
    result = deploy(tree)
    assert result.returncode == 0, result.stdout[-3000:]
    assert version()["version"] == "16.0.0"


def test_a_full_disk_fails_cleanly_and_the_next_run_converges(host, tmp_path_factory, version):
    """A full disk where the releases live (a small tmpfs bound over /srv/hello with a
    copy of it) while the code is unpacked, while a release is created and while the
    installer builds a virtualenv, and where the secret key is written (/etc/hello): each run
    fails, the serving release answers on, no empty secret file is kept; with room
    again, the next run converges. The last runs are site.yml's after the day of deploys: it serves its
    own source again, and its rerun changes nothing. (Last in the file: the tmpfs
    copies stay until the scenario ends.)"""
    server = testlib.container(LIMIT)

    def sh(script):
        done = server.exec_run(["sh", "-c", script])
        assert done.exit_code == 0, done.output.decode()[-2000:]
        return done.output.decode()

    def small(directory, mount, room_mb):
        """directory, from now on a copy of itself on a tmpfs with room_mb MB free."""
        used = int(sh(f"du -sm {directory} | cut -f1"))
        sh(f"mkdir -p {mount} && mount -t tmpfs -o size={used + room_mb}m,mode=0755 tmpfs {mount}"
           f" && cp -a {directory}/. {mount}/ && mount --bind {mount} {directory}")

    serving = version()
    small(ROOT, "/mnt/small-srv", 9)
    # A tree with 6 MB of random bytes: copied as an archive as big; unpacking it beside
    # it finds no room, fails, and gives the room back at once.
    noise = make_version(tmp_path_factory, "40.0.0")
    (Path(noise) / "hello" / "noise.bin").write_bytes(__import__("os").urandom(6 * 1024 * 1024))
    result = deploy(noise)
    assert result.returncode != 0 and "No space left on device" in result.stdout, result.stdout[-3000:]
    assert testlib.failed_task(result.stdout) == "app : Stage the code tree", result.stdout[-3000:]
    assert not host.file(f"{ROOT}/staging/path.new").exists
    assert version() == serving
    # A tree with a 6 MB file: staged (6 MB, from an archive of a few kB), then the
    # release copy finds no room.
    big = make_version(tmp_path_factory, "41.0.0")
    (Path(big) / "hello" / "blob.bin").write_bytes(bytes(6 * 1024 * 1024))
    result = deploy(big)
    assert result.returncode != 0 and "No space left on device" in result.stdout, result.stdout[-3000:]
    assert testlib.failed_task(result.stdout) == "app : Create the release directory", result.stdout[-3000:]
    assert version() == serving
    # New requirements: the virtualenv's build finds no room (2 MB left: the code is
    # staged and copied for the build; then the installer, or root's copy of what it
    # made, fails).
    tree = make_version(tmp_path_factory, "42.0.0", requirements_extra="itsdangerous>=2.2\n# a new venv\n")
    free = int(sh("df -m --output=avail /mnt/small-srv | tail -n 1"))
    assert free > 2, free
    sh(f"dd if=/dev/zero of=/mnt/small-srv/filler bs=1M count={free - 2} 2>/dev/null")
    result = deploy(tree)
    assert result.returncode != 0 and "No space left on device" in result.stdout, result.stdout[-3000:]
    assert testlib.failed_task(result.stdout) in ("app : Install the requirements into a new virtualenv",
                                                  "app : Make the virtualenv root's and mark it complete"), \
        result.stdout[-3000:]
    assert "The virtualenv for release" in result.stdout
    assert version() == serving
    assert host.check_output(f"ls -A {ROOT}/build") == ""  # the failed build's room given back
    # Room again: the next run converges over what the failed ones left.
    sh("rm /mnt/small-srv/filler && mount -o remount,size=1g /mnt/small-srv")
    result = deploy(tree)
    assert result.returncode == 0, result.stdout[-3000:]
    assert version()["version"] == "42.0.0"
    after = state(host)
    assert after["current"] == after["probed"]
    assert not [n for n in host.file(f"{ROOT}/releases").listdir() if n.endswith(".new")]
    assert all(host.file(f"{ROOT}/venvs/{v}/.complete").exists for v in host.file(f"{ROOT}/venvs").listdir())

    # No room for the secret key: the run fails and leaves no secret.env behind.
    small("/etc/hello", "/mnt/small-etc", 1)
    sh("rm /etc/hello/secret.env; dd if=/dev/zero of=/mnt/small-etc/filler bs=4k 2>/dev/null || true")
    result = testlib.run_playbook("site.yml", LIMIT)
    assert result.returncode != 0
    assert testlib.failed_task(result.stdout) == "app : Generate a SECRET_KEY once, on the server", \
        result.stdout[-3000:]
    assert not host.file("/etc/hello/secret.env").exists
    assert version()["version"] == "42.0.0"
    sh("rm /mnt/small-etc/filler")
    result = testlib.run_playbook("site.yml", LIMIT)
    assert result.returncode == 0, result.stdout[-3000:]
    secret = host.file("/etc/hello/secret.env")
    assert secret.mode == 0o600 and len(secret.content_string.strip()) > len("SECRET_KEY=") + 40
    # site.yml deploys its configured source (sample_app/ 1.0.0) again, as a release of
    # its own, health-gated and probed; a rerun finds nothing to change.
    assert version()["version"] == "1.0.0"
    assert version()["release"] == state(host)["probed"] == state(host)["current"]
    again = testlib.run_playbook("site.yml", LIMIT)
    assert again.returncode == 0, again.stdout[-3000:]
    assert testlib.recap(again.stdout, LIMIT)["changed"] == "0", testlib.changed_tasks(again.stdout)
