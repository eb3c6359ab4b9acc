#!/usr/bin/python
"""flaskdeploy_secret: a secret generated once, on the host, into a file of root's."""

DOCUMENTATION = r"""
module: flaskdeploy_secret
short_description: Generate a secret once, on the host, into a root-only file
description:
  - Writes O(content) with C({secret}) replaced by a new random value
    (Python's C(secrets.token_urlsafe(length))) to O(path), when O(path) does not
    exist; an existing O(path) is kept as it is, whatever it holds.
  - The file is written beside O(path) (as O(path).new, which a killed run may leave
    and the next replaces), synced and linked into place, so a full disk or a killed
    run leaves no empty or cut file that a later run would keep; another writer's
    file that appears meanwhile is kept, not overwritten.
  - The file is the running user's (root) with mode 0600. The secret is never returned.
options:
  path:
    description: >-
      The file. Its directory must exist (in check mode it may not yet) and, like every
      directory above it, be writable only by root: the module trusts the path.
    type: path
    required: true
  content:
    description: What the file holds; C({secret}) stands for the value.
    type: str
    default: "{secret}\n"
  length:
    description: Bytes of randomness (C(secrets.token_urlsafe)), 16 to 256.
    type: int
    default: 32
"""

import os
import secrets

from ansible.module_utils.basic import AnsibleModule


def ensure_secret(path, content, length):
    """Write the file unless it exists. True when this call wrote it."""
    if os.path.lexists(path):
        return False
    directory = os.path.dirname(path) or "."
    text = content.replace("{secret}", secrets.token_urlsafe(length))
    # A fixed name beside it: what a killed run left there is replaced, not kept.
    temp = path + ".new"
    try:
        os.unlink(temp)
    except FileNotFoundError:
        pass
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)  # fails when the path exists: never overwrites
        except FileExistsError:
            return False
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True
    finally:
        os.unlink(temp)


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "content": {"type": "str", "default": "{secret}\n"},
            "length": {"type": "int", "default": 32},
        },
        supports_check_mode=True,
    )
    path, content, length = module.params["path"], module.params["content"], module.params["length"]
    if "{secret}" not in content:
        module.fail_json(msg="content must hold {secret}")
    if not 16 <= length <= 256:
        module.fail_json(msg="length must be 16 to 256")
    # (Check mode: the directory may be one the run would make.)
    if module.check_mode:
        module.exit_json(changed=not os.path.lexists(path), path=path)
    if not os.path.isdir(os.path.dirname(path) or "."):
        module.fail_json(msg=f"{os.path.dirname(path)} is not a directory")
    try:
        changed = ensure_secret(path, content, length)
    except OSError as error:  # a full disk, a read-only file system
        module.fail_json(msg=f"{path}: {error.strerror or error}")
    module.exit_json(changed=changed, path=path)


if __name__ == "__main__":
    main()
