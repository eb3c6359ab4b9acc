#!/usr/bin/python
"""flaskdeploy_stage: documentation only; plugins/action/flaskdeploy_stage.py runs the task."""

DOCUMENTATION = r"""
module: flaskdeploy_stage
short_description: The app's code tree from the controller into the server's staging directory, in one task
description:
  - Reads the SHA-256 of the staged tree's stamp and of the archive kept on the host
    with one command; skipped when the stamp is this tree's (each file's path, type,
    size and modification time).
  - Otherwise packs the tree on the controller into one archive (the same code makes
    the same bytes), copies it only when the host's archive differs, and runs the
    O(unpack) command line (the release tool's C(stage)) with the stamp on its
    standard input and C(--incoming=<the copy>) added when one was made.
  - In check mode nothing is copied or unpacked; changed when the archive would be
    copied.
options:
  tree:
    description: The tree's entries as community.general.filetree lists them (path, state, src, root, size, mtime).
    type: list
    elements: dict
    required: true
  staging:
    description:
      - The staging directory on the host. Beside it, C(<staging>.stamp) (the stamp the
        release tool writes once the tree is in place) and C(<staging>.tar.gz) (the
        archive the host keeps).
    type: path
    required: true
  pack_to:
    description: Where the archive is written on the controller.
    type: path
    required: true
  unpack:
    description:
      - The release tool's C(stage) command line up to its root argument; the action
        adds C(--archive), C(--to), C(--stamp-from-stdin) and, after a copy,
        C(--incoming).
    type: list
    elements: str
    required: true
attributes:
  check_mode:
    support: full
"""

if __name__ == "__main__":
    import json
    import sys

    print(json.dumps({"failed": True, "msg": "flaskdeploy_stage runs as an action plugin (plugins/action/)"}))
    sys.exit(1)
