#!/usr/bin/env python3
"""Writes playbooks/vars/flaskdeploy.json from playbooks/vars/flaskdeploy.yml, the
playbooks' wiring of the roles (the YAML, with its comments, is the one to edit; the
plays name the JSON in vars_files). ansible-core parses a play's vars files again for
every task of every host (it caches only vaulted ones): the same values as JSON parse
in a quarter of the time, about a tenth of a run's controller CPU saved. Run it after
changing the YAML; playbooks/tests/test_wiring_json.py fails when the JSON is not
what this writes.

    molecule/scripts/wiring-json.py [--check]
"""

import json
import sys
from pathlib import Path

import yaml

VARS = Path(__file__).resolve().parents[2] / "playbooks" / "vars"
SOURCE, TARGET = VARS / "flaskdeploy.yml", VARS / "flaskdeploy.json"


def rendered():
    """The JSON text the YAML makes: the same keys, in the same order, the same values."""
    return json.dumps(yaml.safe_load(SOURCE.read_text(encoding="utf-8")), indent=2, ensure_ascii=False) + "\n"


def main(argv):
    text = rendered()
    if "--check" in argv:
        if TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET} is not what {SOURCE.name} makes: run {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
