#!/usr/bin/python
"""flaskdeploy_systemd: documentation only; plugins/action/flaskdeploy_systemd.py runs the task."""

DOCUMENTATION = r"""
module: flaskdeploy_systemd
short_description: ansible.builtin.systemd_service, with a unit already as asked costing one systemctl show
description:
  - Takes the arguments of M(ansible.builtin.systemd_service). When the task asks only
    that a unit be started or stopped and/or enabled or disabled, the action plugin
    reads the unit with one C(systemctl show) over the connection; when the unit is
    loaded, needs no daemon-reload and is exactly as asked, the task is done (ok,
    nothing changed). In every other case the arguments go unchanged to
    M(ansible.builtin.systemd_service).
options: {}
attributes:
  check_mode:
    support: full
"""

if __name__ == "__main__":
    import json
    import sys

    print(json.dumps({"failed": True, "msg": "flaskdeploy_systemd runs as an action plugin (plugins/action/)"}))
    sys.exit(1)
