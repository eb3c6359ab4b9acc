"""plugins/action/flaskdeploy_systemd.py: systemd_service's task, one systemctl show when
the unit is already as asked; anything else goes to the module unchanged."""

import importlib.util
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("flaskdeploy_systemd_action", PLUGINS / "action" / "flaskdeploy_systemd.py")
action = importlib.util.module_from_spec(spec)
spec.loader.exec_module(action)

RUNNING = "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\nNeedDaemonReload=no\n"


fakes_spec = importlib.util.spec_from_file_location("fake_action", PLUGINS / "tests" / "fake_action.py")
fakes = importlib.util.module_from_spec(fakes_spec)
fakes_spec.loader.exec_module(fakes)


def run(monkeypatch, args, stdout=RUNNING, rc=0):
    """The plugin's run with the connection faked: (result, commands run, modules run)."""
    return fakes.run(monkeypatch, action, args, rc, stdout)


@pytest.mark.parametrize("args", [
    {"name": "nginx", "state": "started", "enabled": True},
    {"name": "nginx", "state": "started"},
    {"name": "hello.socket", "enabled": True, "no_block": False},
    {"name": "hello.socket", "enabled": True, "state": "started", "daemon_reload": False},
])
def test_a_unit_as_asked_is_one_systemctl_show_and_no_module(monkeypatch, args):
    result, commands, modules = run(monkeypatch, args)
    assert result["changed"] is False and result["msg"] == "as asked already", result
    assert commands == [f"systemctl show --property=LoadState,ActiveState,UnitFileState,NeedDaemonReload -- "
                        f"{args['name']}"]
    assert modules == []


def test_a_stopped_disabled_unit_as_asked(monkeypatch):
    result, _, modules = run(monkeypatch, {"name": "x.timer", "state": "stopped", "enabled": False},
                             "LoadState=loaded\nActiveState=inactive\nUnitFileState=disabled\nNeedDaemonReload=no\n")
    assert result["changed"] is False and modules == []


@pytest.mark.parametrize("args, stdout, queried", [
    ({"name": "nginx", "state": "started", "enabled": True}, RUNNING.replace("=active", "=failed"), True),
    ({"name": "nginx", "state": "started", "enabled": True}, RUNNING.replace("=enabled", "=disabled"), True),
    ({"name": "nginx", "enabled": True}, RUNNING.replace("=enabled", "=static"), True),
    ({"name": "nginx", "enabled": True}, RUNNING.replace("=enabled", "=masked"), True),
    ({"name": "nginx", "state": "started"}, RUNNING.replace("NeedDaemonReload=no", "NeedDaemonReload=yes"), True),
    ({"name": "gone", "state": "started"}, RUNNING.replace("=loaded", "=not-found"), True),
    ({"name": "nginx", "state": "started"}, "", True),  # (systemctl failed)
    ({"name": "nginx", "state": "restarted"}, RUNNING.replace("=active", "=inactive"), True),
    ({"name": "nginx", "state": "reloaded"}, RUNNING.replace("=active", "=activating"), True),
    ({"name": "nginx", "state": "reloaded"}, RUNNING.replace("=active", "=failed"), True),
    ({"name": "nginx", "state": "reloaded"}, RUNNING.replace("NeedDaemonReload=no", "NeedDaemonReload=yes"), True),
    ({"name": "gone", "state": "restarted"}, RUNNING.replace("=loaded", "=not-found"), True),
    ({"name": "nginx", "state": "restarted"}, "", True),  # (systemctl failed)
    ({"name": "nginx", "state": "restarted", "daemon_reload": True}, RUNNING, False),
    ({"name": "nginx", "state": "reloaded", "no_block": True}, RUNNING, False),
    ({"name": "nginx", "state": "started", "daemon_reload": True}, RUNNING, False),
    ({"name": "nginx", "enabled": "yes"}, RUNNING, False),  # (not a bool: the module's to read)
    ({"name": "nginx"}, RUNNING, False),  # only its status: the module returns it whole
    ({"daemon_reload": True}, RUNNING, False),
])
def test_anything_else_goes_to_the_module_unchanged(monkeypatch, args, stdout, queried):
    result, commands, modules = run(monkeypatch, args, stdout)
    assert modules == [("ansible.builtin.systemd_service", args)] and result == {"changed": True}
    assert bool(commands) is queried


def test_a_unit_name_is_one_quoted_word(monkeypatch):
    _, commands, _ = run(monkeypatch, {"name": "a b; touch /x", "state": "started"})
    assert commands[0].endswith(" -- 'a b; touch /x'")
    assert action.shown("A=1\nB=x=y\n") == {"A": "1", "B": "x=y"}


@pytest.mark.parametrize("state, command", [("reloaded", "reload"), ("restarted", "restart")])
def test_a_running_unit_is_reloaded_or_restarted_with_one_systemctl_and_no_module(monkeypatch, state, command):
    calls = []

    def answer(cmd, sudoable):
        calls.append(sudoable)
        return {"rc": 0, "stdout": RUNNING if cmd.startswith("systemctl show") else "", "stderr": ""}

    result, commands, modules = fakes.run(monkeypatch, action, {"name": "hello@8000.service", "state": state},
                                          0, "", answer=answer)
    assert commands[1:] == [f"systemctl {command} -- hello@8000.service </dev/null"] and modules == []
    # (the show as the connection's user, the action under the task's become)
    assert calls == [False, True]
    assert result["changed"] is True and result["state"] == "started" and "failed" not in result, result


def test_a_failed_reload_fails_with_the_modules_message(monkeypatch):
    def answer(cmd, sudoable):
        if cmd.startswith("systemctl show"):
            return {"rc": 0, "stdout": RUNNING}
        # (mitogen adds the line ssh would print)
        return {"rc": 1, "stdout": "", "stderr": "Job for nginx.service failed.\nShared connection to web closed.\n"}

    result, _, modules = fakes.run(monkeypatch, action, {"name": "nginx", "state": "reloaded"}, 0, "", answer=answer)
    assert modules == [] and result["failed"] is True
    assert result["msg"] == "Unable to reload service nginx: Job for nginx.service failed.\n"


def test_in_check_mode_a_reload_goes_to_the_module(monkeypatch):
    args = {"name": "nginx", "state": "reloaded"}
    result, commands, modules = fakes.run(monkeypatch, action, args, 0, RUNNING, check_mode=True)
    assert commands == [] and modules == [("ansible.builtin.systemd_service", args)]
