#!/usr/bin/python
"""flaskdeploy_apt: documentation only; plugins/action/flaskdeploy_apt.py runs the task."""

DOCUMENTATION = r"""
module: flaskdeploy_apt
short_description: ansible.builtin.apt, with nothing to install costing one dpkg-query
description:
  - Takes the arguments of M(ansible.builtin.apt). With O(state=present) (the default)
    and plain package names, the action plugin reads the packages' state with one
    C(dpkg-query) over the connection; when every one is installed the task is done
    (ok, nothing changed, apt's cache not refreshed). In every other case the
    arguments go unchanged to M(ansible.builtin.apt).
options: {}
attributes:
  check_mode:
    support: full
"""

if __name__ == "__main__":
    import json
    import sys

    print(json.dumps({"failed": True, "msg": "flaskdeploy_apt runs as an action plugin (plugins/action/)"}))
    sys.exit(1)
