"""flaskdeploy_command: ansible.builtin.command's `argv` form, run as one command over
the task's connection instead of as a module.

A module is a Python started on the host that first imports Ansible's module_utils
from the zip it was sent (compiled anew each time: about 0.16 s of the host's CPU,
measured with python -X importtime) and then starts the command. Under Ansible's
linear strategy 20 `command` tasks took 9.2-10.7 s and 20 of these 3.8-4.4 s
(docker connection, an idle host; under mitogen 3.5 s and 2.9 s). The roles run
their own programs this way (the release tool, the units' state scripts), which
print JSON and whose failures name themselves; the app's own commands (migration,
build, one-off) and anything else keep ansible.builtin.command.

Arguments: `argv` (a non-empty list; each item quoted for the shell, then run by the
connection's shell under the task's become, as a module would be; no word is
expanded, as with command's `expand_argument_vars: false`), `stdin` (text sent on
the command's standard input, a newline added, as command sends it; without it the
command reads end of file, as a module's command does) and `stdin_add_newline`
(command's: false sends `stdin` as it is). Some input is always
sent, so that ssh never allocates a terminal (it does for a command sent without
input under become), which would merge the command's standard error into its
output.

The result is command's: rc, stdout, stderr and their lines, cmd (the argv),
changed (true, as command says; tasks decide with changed_when) and failed with
"non-zero return code" when rc is not 0 (a command ended by signal n: 128 + n, the
shell's number, where command says -n). In check mode the command is skipped, as
command skips it, unless the task says `check_mode: false`. The task's
`environment` (the play's, a block's) is set for the command, as for a module.
"""

import secrets
import shlex

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.action import ActionBase

ARGS = {"argv", "stdin", "stdin_add_newline"}


def command_line(argv):
    """The shell command that runs argv as it is (each word quoted)."""
    if not isinstance(argv, (list, tuple)) or not argv:
        raise AnsibleActionFail("argv must be a non-empty list")
    return " ".join(shlex.quote(to_text(word)) for word in argv)


def wrapped(cmd, nonce):
    """cmd between lines of its own: the nonce first on stdout and on stderr (what a
    login shell or ssh prints before it is left out), then on stderr the nonce and
    cmd's exit status, and exit 0. The connection's own status is then never the
    command's: ssh takes 255 for its own failure (the host unreachable), which
    systemd-run --wait returns for a unit killed by a signal."""
    return (f"printf '%s\\n' {nonce}; printf '%s\\n' {nonce} >&2; {cmd}; "
            f"printf '\\n%s %d\\n' {nonce} \"$?\" >&2; exit 0")


def unwrapped(nonce, answer):
    """The command's own rc, stdout and stderr from the connection's answer for
    wrapped(): what came between the lines (mitogen adds "Shared connection to X
    closed." after them). The status line is looked for on stderr, then on stdout (a
    connection that merged them, through a terminal); without it, the connection's
    answer as it is when the shell never started (become failed), and no status
    (failed) when it started but did not get there."""
    stdout = to_text(answer.get("stdout", ""), errors="surrogate_or_replace")
    stderr = to_text(answer.get("stderr", ""), errors="surrogate_or_replace")
    for name, text in (("stderr", stderr), ("stdout", stdout)):
        end = text.rfind("\n" + nonce + " ")
        status = text[end + len(nonce) + 2:].split("\n", 1)[0].rstrip("\r") if end >= 0 else ""
        if status.isdigit():
            if name == "stderr":
                stderr = stderr[:end]
            else:  # (both lines of the start on stdout too)
                stdout = after(nonce, stdout[:end])
            return {"rc": int(status), "stdout": after(nonce, stdout), "stderr": after(nonce, stderr)}
    if nonce in stdout or nonce in stderr:
        return {"rc": None, "stdout": after(nonce, stdout), "stderr": after(nonce, stderr)}
    return {"rc": answer.get("rc"), "stdout": stdout, "stderr": stderr}


def after(nonce, text):
    """text after the line that holds only the nonce (all of it without one)."""
    for begin in (nonce + "\n", nonce + "\r\n"):
        if begin in text:
            return text.split(begin, 1)[1]
    return text


def result_of(argv, answer):
    """command's result for the connection's answer (rc, stdout, stderr)."""
    stdout = to_text(answer.get("stdout", ""), errors="surrogate_or_replace").rstrip("\r\n")
    stderr = to_text(answer.get("stderr", ""), errors="surrogate_or_replace").rstrip("\r\n")
    rc = answer.get("rc")
    result = {"cmd": [to_text(word) for word in argv], "rc": rc, "stdout": stdout, "stderr": stderr,
              "stdout_lines": stdout.splitlines(), "stderr_lines": stderr.splitlines(), "changed": True, "msg": ""}
    if rc is None:
        result.update(failed=True, msg="the command's exit status did not come back (the connection cut it short?)")
    elif rc != 0:
        result.update(failed=True, msg="non-zero return code")
    return result


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        unknown = set(self._task.args) - ARGS
        if unknown:
            raise AnsibleActionFail(f"unsupported arguments: {', '.join(sorted(unknown))}")
        argv = self._task.args.get("argv")
        cmd = command_line(argv)
        environment = self._compute_environment_string()
        if self._task.check_mode:
            result.update(result_of(argv, {"rc": 0, "stdout": "", "stderr": ""}), skipped=True, changed=False,
                          msg="Command would have run if not in check mode")
            return result
        stdin = self._task.args.get("stdin")
        if stdin is None or stdin == "":
            # (a line for ssh, end of file for the command, as a module's command has)
            cmd, stdin = f"{cmd} </dev/null", b"\n"
        else:
            # (a newline added, as command adds it, unless stdin_add_newline is false)
            stdin = to_bytes(stdin) + (b"\n" if self._task.args.get("stdin_add_newline", True) else b"")
        nonce = "flaskdeploy-" + secrets.token_hex(8)
        answer = self._low_level_execute_command(wrapped(f"{environment} {cmd}" if environment else cmd, nonce),
                                                 sudoable=True, in_data=stdin)
        result.update(result_of(argv, unwrapped(nonce, answer)))
        return result
