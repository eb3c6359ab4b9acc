"""plugins/action/flaskdeploy_command.py: command's argv form as one command over the
connection; the same result as ansible.builtin.command gives."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleActionFail

PLUGINS = Path(__file__).resolve().parents[1]
fakes_spec = importlib.util.spec_from_file_location("fake_action", PLUGINS / "tests" / "fake_action.py")
fakes = importlib.util.module_from_spec(fakes_spec)
fakes_spec.loader.exec_module(fakes)
action = fakes.load_action("flaskdeploy_command")


def test_each_word_is_quoted_for_the_shell():
    assert action.command_line(["/usr/bin/python3", "a b", "it's", "$HOME", "--x=*"]) == \
        "/usr/bin/python3 'a b' 'it'\"'\"'s' '$HOME' '--x=*'"
    for argv in ([], None, "echo hi", {"a": 1}):
        with pytest.raises(AnsibleActionFail):
            action.command_line(argv)


def test_a_non_zero_return_code_fails_as_command_fails():
    assert action.result_of(["false"], {"rc": 1, "stdout": b"out\n", "stderr": b"err\r\n"}) == {
        "cmd": ["false"], "rc": 1, "stdout": "out", "stderr": "err", "stdout_lines": ["out"],
        "stderr_lines": ["err"], "changed": True, "failed": True, "msg": "non-zero return code"}
    done = action.result_of(["true"], {"rc": 0, "stdout": "", "stderr": ""})
    assert "failed" not in done and done["msg"] == ""


class Task:
    def __init__(self, args, check_mode=False, environment=None):
        self.args, self.check_mode, self.environment = args, check_mode, environment


def run(monkeypatch, args, check_mode=False, environment="", status=0):
    """The plugin's run with the connection faked by sh on this machine (the command
    line run, its input given): (result, [(command line, sudoable, input)])."""
    from ansible.plugins.action import ActionBase

    calls = []

    def execute(cmd, sudoable=True, in_data=None):
        calls.append((cmd, sudoable, in_data))
        # (the inner command replaced by one that prints and exits with status)
        inner = cmd.split("; ")[2]
        done = subprocess.run(["sh", "-c", cmd.replace(inner, f"(echo '{{}}'; echo warned >&2; exit {status})")],
                              input=in_data, capture_output=True)
        return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr + b"Shared connection closed.\r\n"}

    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    plugin = object.__new__(action.ActionModule)
    plugin._task = Task(args, check_mode)
    plugin._compute_environment_string = lambda: environment
    plugin._low_level_execute_command = execute
    return plugin.run(task_vars={}), calls


def inner(cmd):
    """The command line wrapped() wraps."""
    return cmd.split("; ")[2]


def test_one_command_under_become_that_reads_end_of_file(monkeypatch):
    result, calls = run(monkeypatch, {"argv": ["/usr/bin/python3", "tool", "plan", "/srv/app"]})
    # (a line for ssh, so that it allocates no terminal; the command reads /dev/null)
    [(cmd, sudoable, stdin)] = calls
    assert inner(cmd) == "/usr/bin/python3 tool plan /srv/app </dev/null" and sudoable and stdin == b"\n"
    # Only what the command printed, without the lines around it nor the connection's.
    assert {k: result[k] for k in ("rc", "stdout", "stderr", "changed")} == \
        {"rc": 0, "stdout": "{}", "stderr": "warned", "changed": True}


def test_the_input_given_is_the_commands_and_the_environment_is_set(monkeypatch):
    _, calls = run(monkeypatch, {"argv": ["cat"], "stdin": "data"}, environment="LANG=C X='a b'")
    assert [(inner(cmd), stdin) for cmd, _, stdin in calls] == [("LANG=C X='a b' cat", b"data\n")]
    _, calls = run(monkeypatch, {"argv": ["cat"], "stdin": "data", "stdin_add_newline": False})
    assert [stdin for _, _, stdin in calls] == [b"data"]


@pytest.mark.parametrize("status", [1, 255])
def test_the_commands_status_is_its_own_and_the_connection_sees_0(monkeypatch, status):
    """ssh takes an exit status of 255 for its own failure (the host unreachable):
    the wrapper exits 0 and reports the command's status on a line of its own."""
    result, calls = run(monkeypatch, {"argv": ["systemd-run", "--wait", "crash"]}, status=status)
    assert result["rc"] == status and result["failed"] is True and result["msg"] == "non-zero return code"
    assert result["stdout"] == "{}" and result["stderr"] == "warned"
    done = subprocess.run(["sh", "-c", calls[0][0].replace(inner(calls[0][0]), f"(exit {status})")])
    assert done.returncode == 0


@pytest.mark.parametrize("stdout, stderr, expected", [
    # a login shell's banner and sudo's lecture before the lines; no newline at the end
    (b"banner\nN\n{}", b"lecture\nN\nwarned\n\nN 0\n", {"rc": 0, "stdout": "{}", "stderr": "warned\n"}),
    (b"N\n", b"N\n\nN 0\n", {"rc": 0, "stdout": "", "stderr": ""}),  # nothing printed
    # a connection that merged them, through a terminal (\r\n)
    (b"N\r\nN\r\nout\r\nerr\r\n\r\nN 4\r\n", b"", {"rc": 4, "stdout": "out\r\nerr\r\n\r", "stderr": ""}),
    # started, but the status line never came: no status, the task fails
    (b"N\n{}", b"N\n", {"rc": None, "stdout": "{}", "stderr": ""}),
])
def test_the_lines_around_the_command_are_found_wherever_they_come(stdout, stderr, expected):
    assert action.unwrapped("N", {"rc": 0, "stdout": stdout, "stderr": stderr}) == expected
    if expected["rc"] is None:
        assert action.result_of(["x"], expected)["failed"] is True


def test_without_the_status_line_the_connections_answer_stands():
    """become failed (the wrapper never ran): the connection's answer as it is."""
    answer = {"rc": 1, "stdout": b"", "stderr": b"sudo: a password is required\n"}
    assert action.unwrapped("flaskdeploy-x", answer) == {"rc": 1, "stdout": "",
                                                         "stderr": "sudo: a password is required\n"}
    # Output that merely looks like a status line of another nonce changes nothing.
    answer = {"rc": 0, "stdout": b"flaskdeploy-x\n{}\n",
              "stderr": b"flaskdeploy-x\n\nflaskdeploy-y 0\n\nflaskdeploy-x 3\n"}
    assert action.unwrapped("flaskdeploy-x", answer) == {"rc": 3, "stdout": "{}\n", "stderr": "\nflaskdeploy-y 0\n"}


def test_check_mode_skips_as_command_does(monkeypatch):
    result, calls = run(monkeypatch, {"argv": ["rm", "-rf", "/srv/app"]}, check_mode=True)
    assert calls == [] and result == {"skipped": True, "changed": False, "rc": 0, "cmd": ["rm", "-rf", "/srv/app"],
                                      "stdout": "", "stderr": "", "stdout_lines": [], "stderr_lines": [],
                                      "msg": "Command would have run if not in check mode"}


def test_an_unknown_argument_is_refused(monkeypatch):
    with pytest.raises(AnsibleActionFail, match="unsupported arguments: chdir"):
        run(monkeypatch, {"argv": ["true"], "chdir": "/"})


def test_through_ansible_the_result_is_commands(tmp_path):
    """A real run on this machine (local connection): for the same argv, and with
    input, each key command returns is the same, a failure included; the task's
    environment reaches the command; in check mode both skip. No word is expanded
    ($HOME stays $HOME)."""
    script = "import os, sys; print(sys.argv[1:]); print(os.environ.get('FD_X')); print(repr(sys.stdin.read())); " \
             "print('to stderr', file=sys.stderr); sys.exit(int(sys.argv[1]))"
    cases = {"ok": ["0", "a b", "it's", "$HOME", "*"], "fails": ["3", "x"]}
    tasks = []
    for name, words in cases.items():
        for module in ("ansible.builtin.command", "flaskdeploy_command"):
            short = module.split(".")[-1]
            # (command expands $VAR and ~ in the words unless told not to; this never does)
            args = {"argv": [sys.executable, "-c", script, *words]}
            if short == "command":
                args["expand_argument_vars"] = False
            tasks += [
                {"name": f"{short} {name}", module: args,
                 "register": f"{short}_{name}", "ignore_errors": True, "environment": {"FD_X": "set"}},
                {"name": f"{short} {name} with input", module: {**args, "stdin": "in"},
                 "register": f"{short}_{name}_in", "ignore_errors": True},
                {"name": f"{short} {name} in check mode", module: args,
                 "register": f"{short}_{name}_check", "check_mode": True}]
    keys = [f"{kind}_{name}{suffix}" for name in cases for suffix in ("", "_in", "_check")
            for kind in ("command", "flaskdeploy_command")]
    out = fakes.through_ansible(tmp_path, tasks, keys)
    same = ("rc", "stdout", "stderr", "stdout_lines", "stderr_lines", "cmd", "changed", "failed", "msg", "skipped")
    for name in cases:
        for suffix in ("", "_in", "_check"):
            ours, theirs = out[f"flaskdeploy_command_{name}{suffix}"], out[f"command_{name}{suffix}"]
            assert {k: ours.get(k) for k in same} == {k: theirs.get(k) for k in same}, (name, suffix)
    assert out["command_ok"]["stdout"].splitlines() == [repr(cases["ok"]), "set", "''"]
    assert out["command_ok_in"]["stdout"].splitlines()[-1] == "'in\\n'"
    assert out["command_fails"]["rc"] == 3 and out["command_fails"]["stderr"] == "to stderr"
    assert out["command_ok_check"]["skipped"] is True
