"""Tests of roles/app/files/flaskdeploy-release, the release bookkeeping the app role runs."""

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import stat
import sys
import time
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "files" / "flaskdeploy-release"
_loader = importlib.machinery.SourceFileLoader("flaskdeploy_release", str(TOOL))
release_tool = importlib.util.module_from_spec(importlib.util.spec_from_loader(_loader.name, _loader))
_loader.exec_module(release_tool)


def run(capsys, *argv):
    assert release_tool.main([str(a) for a in argv]) == 0
    return json.loads(capsys.readouterr().out)


def stage(tmp_path, version, requirements="flask==3.1.3\n"):
    staging = tmp_path / "staging"
    (staging / "pkg").mkdir(parents=True, exist_ok=True)
    (staging / "pkg" / "__init__.py").write_text(
        f"VERSION = {version!r}\n"
        "def app(environ, start_response):\n"
        "    status = {'/healthz': '200 OK', '/boom': '500 Internal Server Error'}.get(environ['PATH_INFO'], '404 Not Found')\n"
        "    start_response(status, [('Content-Type', 'text/plain')])\n"
        "    return [VERSION.encode()]\n"
    )
    (staging / "requirements.txt").write_text(requirements)
    (staging / ".git").mkdir(exist_ok=True)
    (staging / ".git" / "HEAD").write_text(version)
    return staging


def deploy(capsys, root, staging, venv_dir=None):
    plan = run(capsys, "plan", root, "--staging", staging, "--requirements", staging / "requirements.txt",
               "--package=gunicorn==23.0.0")
    venv = venv_dir or root / "venvs" / plan["venv_key"]
    venv.mkdir(parents=True, exist_ok=True)
    run(capsys, "create", root, "--staging", staging, "--id", plan["id"], "--venv", venv, "--revision", "test")
    switched = run(capsys, "switch", root, "--id", plan["id"])
    return plan, switched


def test_plan_is_a_content_hash(tmp_path, capsys):
    staging = stage(tmp_path, "1")
    first = run(capsys, "plan", tmp_path / "root", "--staging", staging)
    again = run(capsys, "plan", tmp_path / "root", "--staging", staging)
    assert first["id"] == again["id"] and not first["exists"] and first["staged"]
    (staging / ".git" / "HEAD").write_text("other")  # .git is not part of a release
    assert run(capsys, "plan", tmp_path / "root", "--staging", staging)["id"] == first["id"]
    stage(tmp_path, "2")
    assert run(capsys, "plan", tmp_path / "root", "--staging", staging)["id"] != first["id"]


def test_requirements_and_packages_key_the_venv(tmp_path, capsys):
    one, two = stage(tmp_path / "a", "1"), stage(tmp_path / "b", "2")

    def plan(staging, *extra):
        return run(capsys, "plan", tmp_path, "--staging", staging,
                   "--requirements", staging / "requirements.txt", *extra)

    # Other code, same requirements: another release on the same venv.
    assert plan(two)["venv_key"] == plan(one)["venv_key"]
    assert plan(two)["id"] != plan(one)["id"]
    # Another WSGI server package: another venv.
    assert plan(one, "--package=waitress==3.0.2")["venv_key"] != plan(one)["venv_key"]
    # A wheel is installed into the venv: the code keys the venv.
    assert plan(one, "--venv-holds-code")["venv_key"] != plan(two, "--venv-holds-code")["venv_key"]
    # Whether the planned venv is there whole: marked complete (venv-finish), last.
    assert plan(one)["venv_complete"] is False
    venv = tmp_path / "venvs" / plan(one)["venv_key"]
    venv.mkdir(parents=True)
    assert plan(one)["venv_complete"] is False
    (venv / ".complete").symlink_to("/etc/hostname")  # (a link is not the mark)
    assert plan(one)["venv_complete"] is False
    (venv / ".complete").unlink()
    (venv / ".complete").write_text("")
    assert plan(one)["venv_complete"] is True and plan(one, "--package=waitress==3.0.2")["venv_complete"] is False


PYPROJECT = '[project]\nname = "app"\nversion = "1"\ndependencies = ["flask==3.1.3"]\n'


def test_the_plan_finds_what_the_code_declares_in_order(tmp_path, capsys):
    """--dependencies=auto: the requirements file, then uv.lock (with pyproject.toml),
    pylock.toml, pyproject.toml's [project] dependencies; each keys the virtualenv."""
    staging = stage(tmp_path, "1")

    def plan(*extra):
        return run(capsys, "plan", tmp_path / "root", "--staging", staging, "--requirements=requirements.txt", *extra)

    # The key of a requirements file is what it was before uv (no venv rebuilt on upgrade).
    before_uv = hashlib.sha256(("python %d.%d\nrequirements\n" % sys.version_info[:2]).encode()
                               + (staging / "requirements.txt").read_bytes()).hexdigest()[:12]
    assert plan()["venv_key"] == before_uv
    assert plan()["dependencies"] == {"kind": "requirements", "file": "requirements.txt"}
    (staging / "pyproject.toml").write_text(PYPROJECT)
    (staging / "uv.lock").write_text("version = 1\n")
    (staging / "pylock.toml").write_text('lock-version = "1.0"\n')
    assert plan()["venv_key"] == before_uv
    # uv's own settings in the code (an index) key it too; pip reads none of them.
    (staging / "uv.toml").write_text('index-url = "https://pypi.example/simple"\n')
    assert plan()["venv_key"] != before_uv
    assert plan("--installer=pip")["venv_key"] == before_uv
    (staging / "uv.toml").unlink()
    (staging / "requirements.txt").unlink()
    assert plan()["dependencies"] == {"kind": "uv.lock", "file": "uv.lock"}
    uv_lock_key = plan()["venv_key"]
    (staging / "pyproject.toml").write_text(PYPROJECT + "# changed\n")
    assert plan()["venv_key"] != uv_lock_key  # the lock is checked against it: part of the key
    (staging / "uv.lock").unlink()
    assert plan()["dependencies"] == {"kind": "pylock.toml", "file": "pylock.toml"}
    (staging / "pylock.toml").unlink()
    assert plan()["dependencies"] == {"kind": "pyproject", "file": "pyproject.toml"}
    # pip installs from a requirements file only: for it, auto finds nothing else.
    assert plan("--installer=pip")["dependencies"]["kind"] == "none"
    pyproject_key = plan()["venv_key"]
    (staging / "pyproject.toml").write_text(PYPROJECT.replace("3.1.3", "3.1.2"))
    assert plan()["venv_key"] != pyproject_key
    # A pyproject.toml without dependencies (tools' settings only) declares nothing.
    (staging / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")
    assert plan()["dependencies"] == {"kind": "none", "file": ""}
    assert plan("--dependencies=none")["dependencies"]["kind"] == "none"
    # A link to a file of the code is followed (requirements.txt -> requirements/prod.txt).
    (staging / "requirements").mkdir()
    (staging / "requirements" / "prod.txt").write_text("flask==3.1.3\n")
    (staging / "requirements.txt").symlink_to("requirements/prod.txt")
    assert plan()["dependencies"]["kind"] == "requirements" and plan()["venv_key"] == before_uv


@pytest.mark.parametrize("make", ["link out", "link up", "directory", "fifo"])
def test_a_declaration_that_is_no_file_of_the_code_fails_the_plan(tmp_path, capsys, make):
    """A link out of the code (or through ..), a directory or a FIFO where a declaration
    would be: the plan stops naming it (never read through a link, never skipped)."""
    staging = stage(tmp_path, "1")
    target = staging / "requirements.txt"
    target.unlink()
    {"link out": lambda: target.symlink_to("/etc/hostname"),
     "link up": lambda: target.symlink_to("../outside.txt"),
     "directory": target.mkdir,
     "fifo": lambda: os.mkfifo(target)}[make]()
    (tmp_path / "outside.txt").write_text("flask\n")
    with pytest.raises(SystemExit, match="requirements.txt in the code"):
        release_tool.dependencies(str(staging), "auto", "requirements.txt")


def test_a_named_declaration_the_code_lacks_fails_the_plan(tmp_path, capsys):
    staging = stage(tmp_path, "1")
    (staging / "pyproject.toml").write_text(PYPROJECT)
    with pytest.raises(SystemExit, match="no uv.lock"):
        release_tool.main(["plan", str(tmp_path), "--staging", str(staging), "--dependencies=uv.lock"])
    with pytest.raises(SystemExit, match="no requirements file"):
        release_tool.main(["plan", str(tmp_path), "--staging", str(staging), "--dependencies=requirements"])
    assert run(capsys, "plan", tmp_path, "--staging", staging, "--dependencies=pyproject")["dependencies"]["kind"] \
        == "pyproject"


def test_missing_staging_is_reported_not_fatal(tmp_path, capsys):
    plan = run(capsys, "plan", tmp_path, "--staging", tmp_path / "nothing")
    assert plan["staged"] is False


def test_create_switch_previous_and_idempotence(tmp_path, capsys):
    root = tmp_path / "root"
    v1, s1 = deploy(capsys, root, stage(tmp_path, "1"))
    assert s1 == {"changed": True, "from": None, "to": v1["id"], "venv_changed": False, "previous": None,
                  "probed": None}
    release = root / "releases" / v1["id"]
    assert (release / "REVISION").read_text() == f"{v1['id']} test\n"
    assert not (release / ".git").exists()
    assert os.readlink(root / "current") == f"releases/{v1['id']}"

    v2, s2 = deploy(capsys, root, stage(tmp_path, "2"))
    assert s2["changed"] and s2["from"] == v1["id"] and not s2["venv_changed"]
    assert os.readlink(root / "previous") == f"releases/{v1['id']}"
    assert (root / "current" / "pkg" / "__init__.py").read_text().startswith("VERSION = '2'")

    # The same code again changes nothing.
    again = run(capsys, "create", root, "--staging", tmp_path / "staging", "--id", v2["id"],
                "--venv", root / "venvs" / v2["venv_key"])
    assert again["changed"] is False
    assert run(capsys, "switch", root, "--id", v2["id"])["changed"] is False

    # New requirements: a new venv, and the switch says so (the server must restart).
    _, s3 = deploy(capsys, root, stage(tmp_path, "3", requirements="flask==3.1.2\n"))
    assert s3["venv_changed"] is True


def test_switching_back_from_a_failed_release_restores_previous(tmp_path, capsys):
    """After a probe fails, the deploy switches back naming the previous it had
    (--previous): a rollback must never go to the release that failed."""
    root = tmp_path / "root"
    v1, _ = deploy(capsys, root, stage(tmp_path, "1"))
    v2, _ = deploy(capsys, root, stage(tmp_path, "2"))
    broken, s3 = deploy(capsys, root, stage(tmp_path, "3"))
    assert s3["previous"] == v1["id"] and os.readlink(root / "previous") == f"releases/{v2['id']}"
    back = run(capsys, "switch", root, "--id", s3["from"], "--previous", s3["previous"])
    assert back["changed"] and back["to"] == v2["id"]
    assert os.readlink(root / "current") == f"releases/{v2['id']}"
    assert os.readlink(root / "previous") == f"releases/{v1['id']}"
    # A first release that failed: no previous at all afterwards.
    root2 = tmp_path / "root2"
    only, _ = deploy(capsys, root2, stage(tmp_path, "4"))
    assert run(capsys, "switch", root2, "--id", only["id"], "--previous", "")["changed"] is False
    with pytest.raises(SystemExit, match="does not exist"):
        release_tool.main(["switch", str(root), "--id", v1["id"], "--previous", "nope"])
    assert os.readlink(root / "current") == f"releases/{v2['id']}"


def test_probed_records_the_release_the_server_answered_for_and_prune_keeps_it(tmp_path, capsys):
    root = tmp_path / "root"
    v1, _ = deploy(capsys, root, stage(tmp_path, "1"))
    assert run(capsys, "probed", root, "--id", v1["id"]) == {"changed": True, "probed": v1["id"]}
    assert run(capsys, "probed", root, "--id", v1["id"])["changed"] is False
    # A run cut between switch and probe: current moves, probed does not.
    v2, s2 = deploy(capsys, root, stage(tmp_path, "2"))
    v3, s3 = deploy(capsys, root, stage(tmp_path, "3"))
    assert s3["probed"] == v1["id"] and run(capsys, "state", root)["probed"] == v1["id"]
    run(capsys, "prune", root, "--keep", 1)
    assert sorted(os.listdir(root / "releases")) == sorted([v1["id"], v2["id"], v3["id"]])
    deploy(capsys, root, stage(tmp_path, "4"))
    run(capsys, "prune", root, "--keep", 1)
    assert v1["id"] in os.listdir(root / "releases")  # probed, though neither current nor previous
    with pytest.raises(SystemExit, match="does not exist"):
        release_tool.main(["probed", str(root), "--id", "nope"])


def test_switch_to_a_missing_release_fails_and_changes_nothing(tmp_path, capsys):
    root = tmp_path / "root"
    v1, _ = deploy(capsys, root, stage(tmp_path, "1"))
    with pytest.raises(SystemExit, match="does not exist"):
        release_tool.main(["switch", str(root), "--id", "nope"])
    assert os.readlink(root / "current") == f"releases/{v1['id']}"


def test_an_id_that_is_a_path_out_of_releases_is_refused(tmp_path, capsys):
    """switch and create take a release id, never a path: an id leading out of
    releases/ to a directory that exists (and holds a seal's name) is refused, and
    nothing is pointed at it or made there."""
    root = tmp_path / "root"
    v1, _ = deploy(capsys, root, stage(tmp_path, "1"))
    v2, _ = deploy(capsys, root, stage(tmp_path, "2"))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".sealed").write_text("x")
    escape = os.path.relpath(outside, root / "releases")
    for argv in (["--id", escape], ["--id", v1["id"], "--previous", escape]):
        with pytest.raises(SystemExit, match="not a release id"):
            release_tool.main(["switch", str(root), *argv])
        assert os.readlink(root / "current") == f"releases/{v2['id']}"
        assert os.readlink(root / "previous") == f"releases/{v1['id']}"
    with pytest.raises(SystemExit):
        release_tool.main(["create", str(root), "--staging", str(tmp_path / "staging"), "--id", "../made",
                           "--venv", str(root / "venvs" / v1["venv_key"])])
    assert "not a release id" in capsys.readouterr().err
    # (nor where its temporary copy would have gone: "." + id + ".new")
    assert not (root / "made").exists() and not (root / "releases" / ".../made.new").exists()
    assert sorted(os.listdir(root / "releases")) == sorted([v1["id"], v2["id"]])


def test_prune_keeps_current_previous_and_the_newest(tmp_path, capsys):
    root = tmp_path / "root"
    ids = []
    for version in range(5):
        requirements = f"flask==3.1.{version % 2}\n"  # two venvs in turn
        plan, _ = deploy(capsys, root, stage(tmp_path, str(version), requirements))
        ids.append(plan["id"])
        past = time.time() - 100 + version
        os.utime(root / "releases" / plan["id"], (past, past))
    (root / "releases" / ".dead.new").mkdir()
    (root / "venvs" / "orphan").mkdir()
    # Roll back to the oldest: it becomes current, the newest becomes previous.
    run(capsys, "switch", root, "--id", ids[0])
    result = run(capsys, "prune", root, "--keep", 2)
    left = sorted(os.listdir(root / "releases"))
    assert left == sorted([ids[0], ids[4]])
    assert set(result["removed"]) == {ids[1], ids[2], ids[3], ".dead.new"}
    assert "orphan" in result["removed_venvs"]
    assert sorted(os.listdir(root / "venvs")) == sorted(
        {os.path.basename(os.path.realpath(root / "releases" / i / "venv")) for i in left})
    assert run(capsys, "prune", root, "--keep", 2)["changed"] is False


def test_switch_with_keep_prunes_in_the_same_call_and_only_after_a_switch(tmp_path, capsys):
    """deploy.yml's switch: `switch --keep` prunes as `prune --keep` would, once
    `current` moved (nothing to switch: nothing pruned, as before the fold)."""
    root = tmp_path / "root"
    ids = []
    for version in range(4):
        plan, _ = deploy(capsys, root, stage(tmp_path, str(version)))
        ids.append(plan["id"])
        past = time.time() - 100 + version
        os.utime(root / "releases" / plan["id"], (past, past))
    assert run(capsys, "switch", root, "--id", ids[3], "--keep", 1) == {
        "changed": False, "from": ids[3], "to": ids[3], "venv_changed": False, "previous": ids[2], "probed": None}
    assert len(os.listdir(root / "releases")) == 4
    result = run(capsys, "switch", root, "--id", ids[0], "--keep", 1)
    # (ids[2], `previous` before the switch, is kept too: see the next test)
    assert result["changed"] and set(result["pruned"]["removed"]) == {ids[1]}
    assert sorted(os.listdir(root / "releases")) == sorted([ids[0], ids[2], ids[3]])
    assert os.readlink(root / "current") == f"releases/{ids[0]}"
    assert os.readlink(root / "previous") == f"releases/{ids[3]}"


class _Health:
    """An HTTP server on a unix socket answering every GET with `status`."""

    def __init__(self, path, status):
        import socketserver
        import threading
        from http.server import BaseHTTPRequestHandler

        class Handler(BaseHTTPRequestHandler):
            def address_string(self):
                return "local"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                code = int(status.split()[0])
                self.send_response(code)
                self.send_header("Content-Length", str(len(status)))
                self.end_headers()
                self.wfile.write(status.encode())

        self.server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_probe_asks_every_listener_then_records_the_release_they_answered_for(tmp_path, capsys):
    root = tmp_path / "root"
    v1, _ = deploy(capsys, root, stage(tmp_path, "1"))
    good = [_Health(tmp_path / "a.sock", "200 OK"), _Health(tmp_path / "b.sock", "200 OK")]
    sick = _Health(tmp_path / "c.sock", "503 Service Unavailable")
    try:
        result = run(capsys, "probe", tmp_path / "a.sock", tmp_path / "b.sock", "--path", "/healthz",
                     "--status", "200", "--record-probed", f"{root}:{v1['id']}")
        assert result["changed"] and result["probed"] == v1["id"]
        assert [a["listen"] for a in result["answers"]] == [str(tmp_path / "a.sock"), str(tmp_path / "b.sock")]
        assert os.readlink(root / "probed") == f"releases/{v1['id']}"
        # The same again: answered, nothing new to record.
        assert run(capsys, "probe", tmp_path / "a.sock", "--record-probed", f"{root}:{v1['id']}")["changed"] is False
        # One listener sick: the probe fails and records nothing.
        v2, _ = deploy(capsys, root, stage(tmp_path, "2"))
        with pytest.raises(SystemExit, match="c.sock/healthz did not give one of 200 within 1.0s: HTTP 503"):
            release_tool.main(["probe", str(tmp_path / "a.sock"), str(tmp_path / "c.sock"), "--path", "/healthz",
                               "--status", "200", "--timeout", "1", "--record-probed", f"{root}:{v2['id']}"])
        assert os.readlink(root / "probed") == f"releases/{v1['id']}"
        # Without --record-probed: a probe only.
        assert run(capsys, "probe", tmp_path / "b.sock")["changed"] is False
        assert os.readlink(root / "probed") == f"releases/{v1['id']}"
        with pytest.raises(SystemExit, match="does not exist"):
            release_tool.main(["probe", str(tmp_path / "a.sock"), "--record-probed", f"{root}:.."])
        with pytest.raises(SystemExit, match="ROOT an absolute path"):
            release_tool.main(["probe", str(tmp_path / "a.sock"), "--record-probed", v1["id"]])
    finally:
        for server in good + [sick]:
            server.close()


def test_plan_says_whether_a_build_is_running_in_its_unit(tmp_path, capsys, monkeypatch):
    """A killed run may leave a build running in app_build_unit_name: the plan asks
    systemd (any state but inactive or failed is running; systemd not answering: the
    playbook stops it to be sure), so that no task asks when none runs."""
    import subprocess

    staging = stage(tmp_path, "1")
    answers = {}

    def systemctl(argv, **kwargs):
        assert argv[:4] == ["systemctl", "show", "-P", "ActiveState"] and kwargs.get("check")
        answer = answers[argv[4]]
        if isinstance(answer, Exception):
            raise answer
        return subprocess.CompletedProcess(argv, 0, answer + "\n", "")

    monkeypatch.setattr(release_tool.subprocess, "run", systemctl)
    answers.update({"idle": "inactive", "gone": "", "broke": "failed", "busy": "active",
                    "ending": "deactivating", "nosystemd": FileNotFoundError("systemctl")})
    for unit, running in (("idle", False), ("gone", False), ("broke", False), ("busy", True),
                          ("ending", True), ("nosystemd", True)):
        assert run(capsys, "plan", tmp_path, "--staging", staging, f"--build-unit={unit}")["build_running"] is running
    assert run(capsys, "plan", tmp_path, "--staging", staging)["build_running"] is False


def test_a_release_that_fails_its_probe_can_always_be_switched_back_from(tmp_path, capsys):
    """Pruning in the switch keeps the release `previous` named before it: a probe
    failing afterwards switches back naming it as `previous` again (deleted, that
    switch back failed and the failed release kept serving)."""
    root = tmp_path / "root"
    ids = []
    for version in range(3):
        plan, _ = deploy(capsys, root, stage(tmp_path, str(version)))
        ids.append(plan["id"])
    run(capsys, "probed", root, "--id", ids[2])
    failing = stage(tmp_path, "3")
    plan = run(capsys, "plan", root, "--staging", failing)
    venv = root / "venvs" / plan["venv_key"]
    venv.mkdir(parents=True, exist_ok=True)
    run(capsys, "create", root, "--staging", failing, "--id", plan["id"], "--venv", venv)
    switched = run(capsys, "switch", root, "--id", plan["id"], "--keep", 1)
    assert switched["previous"] == ids[1] and ids[1] not in switched["pruned"]["removed"]
    assert ids[0] in switched["pruned"]["removed"]
    # The probe failed: back to the release before, `previous` as it was.
    back = run(capsys, "switch", root, "--id", switched["from"], "--previous", switched["previous"])
    assert back["changed"] and os.readlink(root / "current") == f"releases/{ids[2]}"
    assert os.readlink(root / "previous") == f"releases/{ids[1]}"


def test_state_lists_releases_newest_first(tmp_path, capsys):
    root = tmp_path / "root"
    v1, _ = deploy(capsys, root, stage(tmp_path, "1"))
    time.sleep(0.01)
    v2, _ = deploy(capsys, root, stage(tmp_path, "2"))
    state = run(capsys, "state", root)
    assert [r["id"] for r in state["releases"]] == [v2["id"], v1["id"]]
    assert state["current"] == v2["id"] and state["previous"] == v1["id"]


def test_check_calls_the_wsgi_app_in_process(tmp_path, capsys, monkeypatch):
    staging = stage(tmp_path, "7")
    monkeypatch.chdir(staging)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))  # this test's own `pkg`
    assert run(capsys, "check", "pkg:app", "--path", "/healthz", "--status", "200")["body"] == "7"
    with pytest.raises(SystemExit, match="answered 404 on /missing, not one of 200, 204"):
        release_tool.main(["check", "pkg:app", "--path", "/missing", "--status", "200", "--status", "204"])


def test_check_without_statuses_takes_any_answer_below_500(tmp_path, capsys, monkeypatch):
    """An app without a health endpoint: it imported and answered."""
    staging = stage(tmp_path, "8")
    monkeypatch.chdir(staging)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))  # this test's own `pkg`
    assert run(capsys, "check", "pkg:app")["status"] == 404  # "/" by default
    with pytest.raises(SystemExit, match="answered 500 on /boom, not an answer below 500"):
        release_tool.main(["check", "pkg:app", "--path", "/boom"])


def test_check_imports_the_entry_point_from_pythonpath(tmp_path, capsys, monkeypatch):
    entry = tmp_path / "entry"
    entry.mkdir()
    (entry / "fd_entry_under_test.py").write_text("from pkg import app as application\n")
    staging = stage(tmp_path, "9")
    monkeypatch.chdir(staging)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))  # this test's own `pkg`
    assert run(capsys, "check", "fd_entry_under_test:application", "--pythonpath", entry,
               "--path", "/healthz")["body"] == "9"


def test_probe_gives_up_after_its_timeout(tmp_path):
    with pytest.raises(SystemExit, match="did not give an answer below 500 within 1.0s"):
        release_tool.main(["probe", str(tmp_path / "no.sock"), "--timeout", "1"])


def test_shared_paths_are_links_kept_across_releases(tmp_path, capsys):
    root, shared = tmp_path / "root", tmp_path / "shared"
    (shared / "instance").mkdir(parents=True)

    def release(version, config):
        staging = stage(tmp_path, version)
        (staging / "instance").mkdir(exist_ok=True)
        (staging / "instance" / "config.py").write_text(config)
        plan = run(capsys, "plan", root, "--staging", staging, "--shared", "instance")
        venv = root / "venvs" / plan["venv_key"]
        venv.mkdir(parents=True, exist_ok=True)
        created = run(capsys, "create", root, "--staging", staging, "--id", plan["id"], "--venv", venv,
                      "--shared-root", shared, "--shared", "instance")
        # (run as the app user by the role: root never writes in the data directory)
        run(capsys, "share", shared, "--seed", created["seed"], "--shared", "instance")
        return root / "releases" / plan["id"]

    shutil.rmtree(shared)
    first = release("1", "A = 1\n")
    assert (first / "instance").is_symlink()
    assert os.readlink(first / "instance") == str(shared / "instance")
    # What the code brought seeds the empty shared directory, once; the release keeps
    # it under .shared-seed.
    assert (shared / "instance" / "config.py").read_text() == "A = 1\n"
    assert (first / ".shared-seed" / "instance" / "config.py").read_text() == "A = 1\n"
    (shared / "instance" / "data.db").write_text("rows")
    second = release("2", "A = 2\n")
    assert os.readlink(second / "instance") == str(shared / "instance")
    assert (shared / "instance" / "config.py").read_text() == "A = 1\n"
    assert (shared / "instance" / "data.db").read_text() == "rows"
    # The links are part of the release: the same code without them is another release.
    staging = tmp_path / "staging"
    assert run(capsys, "plan", root, "--staging", staging)["id"] != second.name


@pytest.mark.parametrize("path", ["../up", "/etc", "venv", "REVISION", "a/../../b", "./x"])
def test_shared_paths_outside_the_release_are_refused(tmp_path, path):
    staging = stage(tmp_path, "1")
    with pytest.raises(SystemExit, match="must be a relative path inside the release"):
        release_tool.main(["plan", str(tmp_path / "root"), "--staging", str(staging), "--shared", path])


def test_the_deploy_lock_admits_one_run_until_released_or_expired(tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    first = run(capsys, "lock", root, "--run=a", '--holder={"user": "ann"}', "--lease=60")
    assert first["acquired"] and first["holder"]["user"] == "ann" and first["replaced"] is None
    other = run(capsys, "lock", root, "--run=b", "--lease=60")
    assert not other["acquired"] and other["holder"]["run"] == "a"
    again = run(capsys, "lock", root, "--run=a", "--lease=120")  # the holder renews its lease
    assert again["acquired"] and again["holder"]["since"] == first["holder"]["since"]
    assert again["holder"]["expires"] > first["holder"]["expires"]
    assert not run(capsys, "unlock", root, "--run=b")["released"]  # only the holder's own
    assert run(capsys, "unlock", root, "--run=a")["released"]
    assert run(capsys, "lock", root, "--run=b", "--lease=60")["acquired"]
    lock = root / "deploy.lock"
    record = json.loads(lock.read_text())
    record["expires"] = time.time() - 1  # a lease that ran out frees the lock
    lock.write_text(json.dumps(record))
    taken = run(capsys, "lock", root, "--run=c", "--lease=60")
    assert taken["acquired"] and taken["replaced"]["run"] == "b"


def test_a_dead_runs_lock_is_taken_over_only_when_named(tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    assert run(capsys, "lock", root, "--run=a", "--lease=600")["acquired"]
    assert not run(capsys, "lock", root, "--run=b", "--take-over=z")["acquired"]
    taken = run(capsys, "lock", root, "--run=b", "--take-over=a")
    assert taken["acquired"] and taken["replaced"]["run"] == "a"
    assert run(capsys, "unlock", root)["released"]  # the operator's unlock frees anyone's
    assert not (root / "deploy.lock").exists()


CONTROLLER = Path(__file__).resolve().parents[1] / "files" / "flaskdeploy-controller-run"


def test_the_controller_names_its_ansible_playbook_process_and_tells_dead_runs(tmp_path):
    import subprocess

    def ask(*argv):
        return subprocess.run([sys.executable, str(CONTROLLER), *argv], capture_output=True, text=True,
                              check=True).stdout.strip()

    # A stand-in for ansible-playbook: a worker forked from it asks who the run is,
    # then the main process lives on until its stdin closes.
    fake = tmp_path / "ansible-playbook"
    fake.write_text(
        "import os, subprocess, sys\n"
        "if os.fork() == 0:\n"
        "    out = subprocess.run([sys.executable, %r], capture_output=True, text=True).stdout\n"
        "    sys.stdout.write(out); sys.stdout.flush(); os._exit(0)\n"
        "os.wait()\n"
        "sys.stdin.read()\n" % str(CONTROLLER)
    )
    playbook = subprocess.Popen([sys.executable, str(fake)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        me = json.loads(playbook.stdout.readline())
        assert me["pid"] == playbook.pid  # the main process, not the worker that asked
        assert me["run"].startswith("%s:%d:" % (me["controller"], playbook.pid))
        assert ask(json.dumps(me)) == "alive"
        assert ask(json.dumps(dict(me, started="0"))) == "dead"  # the pid reused by another process
        assert ask(json.dumps(dict(me, controller="another-host"))) == "elsewhere"
    finally:
        playbook.stdin.close()
        playbook.wait()
    assert ask(json.dumps(me)) == "dead"
    # Not under ansible-playbook: a random run id, which nobody can declare dead.
    alone = json.loads(ask())
    assert alone["pid"] is None and ask(json.dumps(alone)) == "elsewhere"


def test_boot_serves_the_probed_release_again_after_a_cut_short_switch(tmp_path, capsys):
    root = tmp_path / "root"
    plan1, _ = deploy(capsys, root, stage(tmp_path, "1"))
    assert not run(capsys, "boot", root)["changed"]  # nothing probed yet: left alone
    run(capsys, "probed", root, "--id", plan1["id"])
    plan2, _ = deploy(capsys, root, stage(tmp_path, "2"))  # switched, never probed
    booted = run(capsys, "boot", root)
    assert booted == {"changed": True, "from": plan2["id"], "current": plan1["id"], "probed": plan1["id"]}
    assert run(capsys, "state", root)["current"] == plan1["id"]
    assert not run(capsys, "boot", root)["changed"]


def test_a_failed_create_leaves_no_partial_release(tmp_path, capsys, monkeypatch):
    root = tmp_path / "root"
    staging = stage(tmp_path, "1")
    plan = run(capsys, "plan", root, "--staging", staging)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(release_tool.os, "symlink", full_disk)
    with pytest.raises(OSError):
        release_tool.main(["create", str(root), "--staging", str(staging), "--id", plan["id"], "--venv", "/v"])
    assert os.listdir(root / "releases") == []


@pytest.mark.parametrize("paths, message", [
    (["", "instance"], "must be a relative path"),
    (["."], "must be a relative path"),
    (["a//b"], "must be a relative path"),
    ([".sealed"], "must be a relative path"),
    ([".shared-seed/x"], "must be a relative path"),
    (["instance", "instance/uploads"], "overlap"),
    (["instance/uploads", "instance"], "overlap"),
    (["data", "data"], "overlap"),
])
def test_empty_reserved_and_overlapping_shared_paths_are_refused(tmp_path, paths, message):
    """Once `instance` is a link into the shared directory, `instance/uploads` would
    resolve into that directory itself: nested entries are refused, as is a name the
    tool makes in every release."""
    staging = stage(tmp_path, "1")
    with pytest.raises(SystemExit, match=message):
        release_tool.main(["plan", str(tmp_path / "root"), "--staging", str(staging)]
                          + [f"--shared={p}" for p in paths])
    with pytest.raises(SystemExit, match=message):
        release_tool.main(["share", str(tmp_path / "shared"), "--seed", str(tmp_path)]
                          + [f"--shared={p}" for p in paths])


def test_the_build_command_is_part_of_the_release_id(tmp_path, capsys):
    staging = stage(tmp_path, "1")
    ids = {run(capsys, "plan", tmp_path / "root", "--staging", staging, *extra)["id"]
           for extra in ([], ["--build-command=make assets"], ["--build-command=make css"])}
    assert len(ids) == 3


def build_user():
    import pwd

    return pwd.getpwnam("nobody")


def built_release(tmp_path, capsys, build, shared=("instance",)):
    """A release made through a build as user nobody: `build` (a function of the build
    directory) stands for app_build_command. Returns (root, plan, result of the
    --from-build create or the SystemExit it raised)."""
    root, shared_root = tmp_path / "root", tmp_path / "data" / "shared"
    staging = stage(tmp_path, "1")
    (staging / "instance").mkdir()
    (staging / "instance" / "config.py").write_text("A = 1\n")
    args = ["--shared-root", shared_root] + [f"--shared={p}" for p in shared]
    plan = run(capsys, "plan", root, "--staging", staging, "--build-command=b", *args[2:])
    venv = root / "venvs" / plan["venv_key"]
    venv.mkdir(parents=True)
    common = ["create", root, "--staging", staging, "--id", plan["id"], "--venv", venv, "--revision", "t", *args]
    prepared = run(capsys, *common, "--build-for=nobody")
    directory = Path(prepared["build"])
    assert directory == root / "build" / plan["id"]
    assert not (root / "releases" / plan["id"]).exists()
    assert not run(capsys, "plan", root, "--staging", staging, "--build-command=b", *args[2:])["exists"]
    user = build_user()
    for parent, dirs, files in os.walk(directory):
        for name in [parent] + [os.path.join(parent, n) for n in dirs + files]:
            assert os.lstat(name).st_uid == user.pw_uid, name
    build(directory)
    try:
        result = run(capsys, *common, "--from-build=nobody")
    except SystemExit as error:
        result = error
    return root, plan, result


def test_a_build_cannot_swap_the_venv_link_or_leave_set_id_or_foreign_files(tmp_path, capsys):
    """What a hostile build leaves in its copy: its own venv link, a set-uid file, a
    FIFO, a link where a shared path's parent was. The release root makes from it
    has root's venv link and shared links, no set-id bit, no FIFO, and is sealed."""
    def hostile(directory):
        (directory / "built.txt").write_text("assets")
        os.chmod(directory / "built.txt", 0o600)  # the sandbox's umask: readable again in the release
        (directory / "venv").unlink()
        os.symlink(tmp_path / "data" / "evil-venv", directory / "venv")
        (directory / "suid").write_text("#!/bin/sh\n")
        os.chmod(directory / "suid", 0o4755)
        os.mkfifo(directory / "fifo")
        (directory / "REVISION").write_text("forged\n")
        (directory / ".sealed").write_text("forged\n")
        for parent, dirs, files in os.walk(directory):
            for name in [parent] + [os.path.join(parent, n) for n in dirs + files]:
                os.lchown(name, build_user().pw_uid, build_user().pw_gid)

    root, plan, result = built_release(tmp_path, capsys, hostile)
    release = root / "releases" / plan["id"]
    assert result["changed"] and release.is_dir()
    assert os.readlink(release / "venv") == str(root / "venvs" / plan["venv_key"])
    assert os.readlink(release / "instance") == str(tmp_path / "data" / "shared" / "instance")
    assert (release / "built.txt").read_text() == "assets" and stat.S_IMODE(os.stat(release / "built.txt").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(release / "suid").st_mode) == 0o755
    assert not (release / "fifo").exists()
    assert (release / "REVISION").read_text() == f"{plan['id']} t\n"
    assert (release / ".sealed").read_text() == plan["id"] + "\n"
    assert release_tool.seal_problem(str(release), str(root / "venvs")) is None
    assert not (root / "build" / plan["id"]).exists()
    assert run(capsys, "plan", root, "--staging", tmp_path / "staging", "--build-command=b", "--shared=instance")["exists"]


def test_a_build_cannot_hand_root_another_users_file(tmp_path, capsys):
    """A hard link to a file the build's user does not own (where the kernel allows
    one) is refused, naming it, and no release is made."""
    def foreign(directory):
        (directory / "shadow").write_text("secret")  # root's, as a hard link would be
    root, plan, result = built_release(tmp_path, capsys, foreign)
    assert isinstance(result, SystemExit) and "shadow is owned by uid 0" in str(result)
    assert not (root / "releases" / plan["id"]).exists()
    assert os.listdir(root / "releases") == []


def test_a_link_where_a_shared_paths_parent_was_is_not_followed(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()

    def swap(directory):
        shutil.rmtree(directory / "a")
        os.symlink(outside, directory / "a")

    root, plan, result = built_release(tmp_path, capsys, swap, shared=("a/b",))
    release = root / "releases" / plan["id"]
    assert (release / "a").is_dir() and not (release / "a").is_symlink()
    assert os.listdir(outside) == []


def test_an_unsealed_release_is_remade_or_refused_never_switched_to(tmp_path, capsys):
    """A release an older version left half-built and the app user's (a run killed
    during the build): not `existing` to plan, refused by switch, refused by create
    while something names it, remade by create once nothing does. One unsealed but
    fit (root's throughout) is sealed and used."""
    root = tmp_path / "root"

    def unseal(plan, foreign=True):
        release = root / "releases" / plan["id"]
        (release / ".sealed").unlink()
        if foreign:
            os.chown(release / "pkg" / "__init__.py", build_user().pw_uid, -1)
        return release

    def create(plan, version):
        return run(capsys, "create", root, "--staging", stage(tmp_path, version), "--id", plan["id"],
                   "--venv", root / "venvs" / plan["venv_key"], "--revision", "again")

    plan1, _ = deploy(capsys, root, stage(tmp_path, "1"))
    unseal(plan1)
    assert run(capsys, "plan", root, "--staging", tmp_path / "staging", "--requirements",
               tmp_path / "staging" / "requirements.txt", "--package=gunicorn==23.0.0")["exists"] is False
    with pytest.raises(SystemExit, match="not sealed and in use"):
        create(plan1, "1")
    plan2, _ = deploy(capsys, root, stage(tmp_path, "2"))
    plan3, _ = deploy(capsys, root, stage(tmp_path, "3"))
    with pytest.raises(SystemExit, match="is not sealed: .*owned by uid"):
        release_tool.main(["switch", str(root), "--id", plan1["id"]])
    assert run(capsys, "state", root)["current"] == plan3["id"]
    remade = create(plan1, "1")
    assert remade["changed"] and (root / "releases" / plan1["id"] / ".sealed").is_file()
    assert os.stat(root / "releases" / plan1["id"] / "pkg" / "__init__.py").st_uid == os.geteuid()
    release2 = unseal(plan2, foreign=False)
    os.chmod(release2 / "requirements.txt", 0o666)
    with pytest.raises(SystemExit, match="requirements.txt has mode 666"):
        release_tool.main(["switch", str(root), "--id", plan2["id"]])
    os.chmod(release2 / "requirements.txt", 0o664)  # root's group: as an older version copied it
    assert run(capsys, "switch", root, "--id", plan2["id"])["changed"]
    assert (root / "releases" / plan2["id"] / ".sealed").is_file()


def test_a_link_in_the_code_above_a_shared_path_seeds_nothing(tmp_path, capsys):
    """The code has `conf -> /somewhere` and conf/ssl is a shared path: root does not
    follow the link to take seeds (it would copy whatever is there, keys included,
    into a release readable by all)."""
    secret = tmp_path / "etc" / "ssl"
    secret.mkdir(parents=True)
    (secret / "key.pem").write_text("private")
    os.chmod(secret / "key.pem", 0o600)
    root = tmp_path / "root"
    staging = stage(tmp_path, "1")
    os.symlink(tmp_path / "etc", staging / "conf")
    plan = run(capsys, "plan", root, "--staging", staging, "--shared=conf/ssl")
    venv = root / "venvs" / plan["venv_key"]
    venv.mkdir(parents=True)
    run(capsys, "create", root, "--staging", staging, "--id", plan["id"], "--venv", venv,
        "--shared-root", tmp_path / "shared", "--shared=conf/ssl")
    release = root / "releases" / plan["id"]
    assert not (release / ".shared-seed").exists()
    assert (release / "conf").is_dir() and not (release / "conf").is_symlink()
    assert os.readlink(release / "conf" / "ssl") == str(tmp_path / "shared" / "conf" / "ssl")


def test_a_forged_seal_is_no_seal(tmp_path, capsys):
    """A release an older version let a build write in may hold its own .sealed: only
    a regular file of root's naming the release, with the venv link into venvs/,
    counts."""
    root = tmp_path / "root"
    plan, _ = deploy(capsys, root, stage(tmp_path, "1"))
    release = root / "releases" / plan["id"]
    assert release_tool.is_sealed(str(root), plan["id"])
    (release / ".sealed").unlink()
    os.symlink("/etc/hostname", release / ".sealed")
    assert not release_tool.is_sealed(str(root), plan["id"])
    (release / ".sealed").unlink()
    (release / ".sealed").write_text("another-id\n")
    assert not release_tool.is_sealed(str(root), plan["id"])
    (release / ".sealed").write_text(plan["id"] + "\n")
    (release / "venv").unlink()
    os.symlink(tmp_path, release / "venv")
    assert not release_tool.is_sealed(str(root), plan["id"])


def test_a_link_to_a_directory_is_part_of_the_release_id(tmp_path, capsys):
    staging = stage(tmp_path, "1")
    (staging / "a").mkdir()
    (staging / "b").mkdir()
    os.symlink("a", staging / "static")
    first = run(capsys, "plan", tmp_path / "root", "--staging", staging)["id"]
    (staging / "static").unlink()
    os.symlink("b", staging / "static")
    assert run(capsys, "plan", tmp_path / "root", "--staging", staging)["id"] != first


def test_a_venv_is_built_by_the_app_user_and_made_roots_without_following_a_link(tmp_path, capsys):
    """venv-prepare gives the build a readable copy of the code (no .git) and a venv/
    of its own, and leaves venvs/<key> empty (where the build sees it); venv-finish
    copies what the build left into a root-owned venvs/<key>: links kept as links
    (never followed), no set-id bit, modification times kept (.pyc files name them),
    a forged .complete replaced, the build removed."""
    root, staging = tmp_path / "root", stage(tmp_path, "1")
    (root / "venvs").mkdir(parents=True)
    prepared = run(capsys, "venv-prepare", root, "--key=abcdef012345", "--staging", staging, "--build-for=nobody")
    code, built, final = Path(prepared["code"]), Path(prepared["venv"]), root / "venvs" / "abcdef012345"
    assert prepared["changed"] and final.is_dir() and os.listdir(final) == []
    assert (code / "requirements.txt").read_text() == "flask==3.1.3\n" and not (code / ".git").exists()
    user = build_user()
    assert all(os.lstat(os.path.join(p, n)).st_uid == user.pw_uid
               for p, ds, fs in os.walk(code) for n in ds + fs + ["."])
    assert os.stat(built).st_uid == user.pw_uid and os.stat(built.parent).st_uid == 0
    # What a hostile build leaves: links out, a set-uid file, a forged mark.
    (built / "bin").mkdir()
    os.symlink("/usr/bin/python3", built / "bin" / "python")
    os.symlink("/etc", built / "etc-link")
    (built / "bin" / "tool").write_text("#!/bin/sh\n")
    os.chmod(built / "bin" / "tool", 0o4777)
    os.utime(built / "bin" / "tool", (1_000_000_000, 1_000_000_000))
    (built / ".complete").write_text("forged\n")
    for parent, dirs, files in os.walk(built):
        for name in [parent] + [os.path.join(parent, n) for n in dirs + files]:
            os.lchown(name, user.pw_uid, user.pw_gid)
    assert run(capsys, "venv-finish", root, "--key=abcdef012345", "--from-build=nobody")["changed"]
    assert os.readlink(final / "bin" / "python") == "/usr/bin/python3"
    assert os.readlink(final / "etc-link") == "/etc" and not (Path("/etc") / ".complete").exists()
    assert stat.S_IMODE(os.lstat(final / "bin" / "tool").st_mode) == 0o755
    assert os.lstat(final / "bin" / "tool").st_mtime == 1_000_000_000
    assert (final / ".complete").read_text() == "abcdef012345\n"
    assert all(os.lstat(os.path.join(p, n)).st_uid == 0
               for p, ds, fs in os.walk(final) for n in ds + fs)
    assert not (root / "build" / "venv-abcdef012345").exists()
    # Complete: a second prepare changes nothing.
    assert not run(capsys, "venv-prepare", root, "--key=abcdef012345", "--staging", staging, "--build-for=nobody")["changed"]


def test_a_venv_build_cannot_hand_root_another_users_file(tmp_path, capsys):
    """A file in the build not owned by the build's user (a hard link to root's) is
    refused, and venvs/<key> stays incomplete."""
    root, staging = tmp_path / "root", stage(tmp_path, "1")
    (root / "venvs").mkdir(parents=True)
    prepared = run(capsys, "venv-prepare", root, "--key=abcdef012345", "--staging", staging, "--build-for=nobody")
    (Path(prepared["venv"]) / "shadow").write_text("secret")  # root's
    with pytest.raises(SystemExit, match="shadow is owned by uid 0"):
        run(capsys, "venv-finish", root, "--key=abcdef012345", "--from-build=nobody")
    assert not (root / "venvs" / "abcdef012345" / ".complete").exists()
    assert not (root / "venvs" / ".abcdef012345.new").exists()


@pytest.mark.parametrize("key", ["../../etc", "abc", "ABCDEF012345", "abcdef0123456"])
def test_a_venv_key_that_is_no_key_is_refused(tmp_path, capsys, key):
    with pytest.raises(SystemExit):
        release_tool.main(["venv-finish", str(tmp_path), "--key=" + key, "--from-build=nobody"])
    assert "not a virtualenv key" in capsys.readouterr().err


def test_removing_a_tree_the_app_user_owns_opens_no_link_fifo_or_device(tmp_path, capsys):
    """discard-build (and every removal of a build): a link to a directory outside, a
    FIFO and a device node in the tree are unlinked, never followed or opened (an
    open FIFO would hang the run); what the link pointed at is untouched."""
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "file").write_text("kept")
    build = tmp_path / "root" / "build" / "venv-abcdef012345"
    (build / "venv" / "lib").mkdir(parents=True)
    (build / "venv" / "lib" / "module.py").write_text("")
    os.symlink(outside / "keep", build / "venv" / "lib" / "linked")
    os.mkfifo(build / "venv" / "fifo")
    os.mknod(build / "venv" / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.symlink(outside, build / "code")
    for parent, dirs, files in os.walk(build):
        for name in [parent] + [os.path.join(parent, n) for n in dirs + files]:
            os.lchown(name, build_user().pw_uid, build_user().pw_gid)
    os.chown(build, 0, 0)
    assert run(capsys, "discard-build", tmp_path / "root", "--name=venv-abcdef012345")["changed"]
    assert not build.exists() and (tmp_path / "root" / "build").is_dir()
    assert (outside / "keep" / "file").read_text() == "kept"
    assert not run(capsys, "discard-build", tmp_path / "root", "--name=venv-abcdef012345")["changed"]


@pytest.mark.parametrize("name", ["..", "venv-../x", "abc", "venv-abcdef01234"])
def test_discard_build_takes_only_a_builds_name(tmp_path, capsys, name):
    with pytest.raises(SystemExit):
        release_tool.main(["discard-build", str(tmp_path), "--name=" + name])
    assert "not a build's name" in capsys.readouterr().err


ACTION = Path(__file__).resolve().parents[3] / "plugins" / "action" / "flaskdeploy_stage.py"


def pack(tree_dir, out):
    """The flaskdeploy_stage action's pack of a directory, its entries as the filetree
    lookup lists them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("flaskdeploy_stage_action", ACTION)
    action = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(action)
    entries = [{"path": str(p.relative_to(tree_dir)), "src": str(p),
                "state": "directory" if p.is_dir() and not p.is_symlink() else "link" if p.is_symlink() else "file"}
               for p in sorted(tree_dir.rglob("*"))]
    return action.pack(entries, str(out))


def packed_tree(tmp_path, archive):
    """A code tree of one file (app/__init__.py) packed into `archive`, and an empty
    ROOT/staging: ROOT."""
    tree = tmp_path / "tree"
    (tree / "app").mkdir(parents=True)
    (tree / "app" / "__init__.py").write_text("x = 1\n")
    pack(tree, archive)
    root = tmp_path / "srv"
    (root / "staging").mkdir(parents=True)
    return root


def test_stage_puts_the_copied_archive_in_place_as_roots_without_following_a_link(tmp_path, capsys):
    root = packed_tree(tmp_path, tmp_path / "incoming.tar.gz")
    staged, archive = root / "staging" / "path", root / "staging" / "path.tar.gz"
    # A link where the new archive is written first: removed, never written through.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not the archive\n")
    (root / "staging" / "path.tar.gz.new").symlink_to(elsewhere)
    args = ["stage", str(root), f"--archive={archive}", f"--to={staged}"]
    packed = (tmp_path / "incoming.tar.gz").read_bytes()
    assert run(capsys, *args, f"--incoming={tmp_path / 'incoming.tar.gz'}")["changed"] is True
    assert archive.read_bytes() == packed
    assert not (tmp_path / "incoming.tar.gz").exists()  # (its room back before the unpacking)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600 and not archive.is_symlink()
    assert elsewhere.read_text() == "not the archive\n"
    assert (staged / "app" / "__init__.py").read_text() == "x = 1\n"
    assert sorted(os.listdir(root / "staging")) == ["path", "path.tar.gz"]
    # A link given as the copy is not followed, nor a FIFO waited on: refused.
    (tmp_path / "other.tar.gz").write_bytes(packed)
    (tmp_path / "link.tar.gz").symlink_to(tmp_path / "other.tar.gz")
    with pytest.raises(OSError):
        release_tool.main([*args, f"--incoming={tmp_path / 'link.tar.gz'}"])
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(SystemExit, match="not a regular file"):
        release_tool.main([*args, f"--incoming={tmp_path / 'fifo'}"])
    # Nor is an archive written outside the staging directory.
    with pytest.raises(SystemExit, match="must be in"):
        release_tool.main(["stage", str(root), f"--archive={tmp_path / 'code.tar.gz'}", f"--to={staged}",
                           f"--incoming={tmp_path / 'other.tar.gz'}"])
    assert not (tmp_path / "code.tar.gz").exists() and (tmp_path / "link.tar.gz").is_symlink()
    assert (staged / "app" / "__init__.py").exists() and archive.read_bytes() == packed


def test_stage_puts_the_tree_in_place_whole_and_says_whether_it_changed(tmp_path, capsys):
    tree = tmp_path / "tree"
    (tree / "app" / "empty").mkdir(parents=True)
    (tree / "app" / "__init__.py").write_text("x = 1\n")
    (tree / "elsewhere").symlink_to("/etc")  # a link is left out, as the copy left it
    pack(tree, tmp_path / "code.tar.gz")
    root = tmp_path / "srv"
    (root / "staging").mkdir(parents=True)
    staged = root / "staging" / "path"
    # What a run killed while unpacking leaves, and a tree staged before.
    (root / "staging" / "path.new" / "half").mkdir(parents=True)
    staged.mkdir()
    (staged / "deleted.py").write_text("gone from the source\n")
    args = ["stage", str(root), f"--archive={tmp_path / 'code.tar.gz'}", f"--to={staged}"]
    assert run(capsys, *args)["changed"] is True
    assert sorted(str(p.relative_to(staged)) for p in staged.rglob("*")) == ["app", "app/__init__.py", "app/empty"]
    assert stat.S_IMODE((staged / "app" / "__init__.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((staged / "app").stat().st_mode) == 0o755
    assert sorted(os.listdir(root / "staging")) == ["path"]
    assert run(capsys, *args)["changed"] is False


def test_the_stamp_is_dropped_before_unpacking_and_written_once_the_tree_is_in_place(tmp_path, capsys,
                                                                                    monkeypatch):
    """--stamp-from-stdin: the stamp (the playbook's record of the source tree it
    staged) names the tree beside it or is not there; a link in its place is removed,
    never written through."""
    import io
    import tarfile

    root = packed_tree(tmp_path, tmp_path / "code.tar.gz")
    staged, stamp = root / "staging" / "path", root / "staging" / "path.stamp"
    args = ["stage", str(root), f"--archive={tmp_path / 'code.tar.gz'}", f"--to={staged}", "--stamp-from-stdin"]

    def stage_with(content, archive=None):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(content)))
        argv = args if archive is None else [*args[:2], f"--archive={archive}", *args[3:]]
        return run(capsys, *argv)

    target = tmp_path / "elsewhere"
    target.write_text("not the stamp\n")
    stamp.symlink_to(target)
    umask = os.umask(0o077)
    try:
        assert stage_with("app/__init__.py 0644 6 1\nü".encode())["changed"] is True
    finally:
        os.umask(umask)
    assert stamp.read_bytes() == "app/__init__.py 0644 6 1\nü".encode() and not stamp.is_symlink()
    assert stat.S_IMODE(stamp.stat().st_mode) == 0o644
    assert target.read_text() == "not the stamp\n"
    assert sorted(os.listdir(root / "staging")) == ["path", "path.stamp"]
    # An archive that cannot be unpacked: the tree before stays, and no stamp names it
    # as the new source's.
    (tmp_path / "broken.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(tarfile.ReadError):
        stage_with(b"the next tree", tmp_path / "broken.tar.gz")
    assert not stamp.exists() and (staged / "app" / "__init__.py").exists()
    assert stage_with(b"again")["changed"] is False
    assert stamp.read_bytes() == b"again"


def test_stage_refuses_an_archive_reaching_outside_the_tree(tmp_path, capsys):
    import io
    import tarfile

    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 4
        out.addfile(info, io.BytesIO(b"evil"))
    (tmp_path / "srv" / "staging").mkdir(parents=True)
    with pytest.raises(SystemExit, match="outside the tree"):
        run(capsys, "stage", str(tmp_path / "srv"), f"--archive={archive}", f"--to={tmp_path / 'srv/staging/path'}")
    assert not (tmp_path / "srv" / "staging" / "outside.txt").exists()
    assert os.listdir(tmp_path / "srv" / "staging") == []
    with pytest.raises(SystemExit, match="must be a directory"):
        run(capsys, "stage", str(tmp_path / "srv"), f"--archive={archive}", f"--to={tmp_path / 'srv/other/path'}")
