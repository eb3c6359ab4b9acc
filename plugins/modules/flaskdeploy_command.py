#!/usr/bin/python
"""flaskdeploy_command: documentation only; plugins/action/flaskdeploy_command.py runs the task."""

DOCUMENTATION = r"""
module: flaskdeploy_command
short_description: ansible.builtin.command's argv form, one command over the connection, no module
description:
  - Runs O(argv) (each word quoted for the shell) with one command over the task's
    connection, under the task's become and environment, as a module would run; no
    Python is started on the host for it. For the roles' own programs, which print
    JSON; anything else keeps M(ansible.builtin.command). No word is expanded (no $VAR, no ~).
  - The result is M(ansible.builtin.command)'s (rc, stdout, stderr, their lines, cmd;
    changed true; failed when rc is not 0). In check mode the command is skipped
    unless the task sets its check_mode to false.
options:
  argv:
    description: The program and its arguments.
    type: list
    elements: str
    required: true
  stdin:
    description:
      - Text for the command's standard input, a newline added as M(ansible.builtin.command)
        adds it. Without it the command reads end of file (an empty line goes to the
        connection, so that ssh allocates no terminal).
    type: str
attributes:
  check_mode:
    support: partial
    details: Skipped in check mode, as M(ansible.builtin.command) is, unless the task sets its check_mode to false.
"""

if __name__ == "__main__":
    import json
    import sys

    print(json.dumps({"failed": True, "msg": "flaskdeploy_command runs as an action plugin (plugins/action/)"}))
    sys.exit(1)
