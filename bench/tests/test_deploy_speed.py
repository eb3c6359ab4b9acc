import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import deploy_speed  # noqa: E402

# ansible-playbook's output with the ansible.posix.profile_tasks callback: each header
# is followed by a line giving the duration of the task before it.
OUTPUT = """
PLAY [Deploy a new release of the Flask application] ***************************

TASK [Check the variables of the roles before changing anything] ***************
Sunday 06 December 2026  05:26:32 +0000 (0:00:00.900)       0:00:00.900 *******
ok: [web]

TASK [app : Plan the release] **************************************************
Sunday 06 December 2026  05:26:33 +0000 (0:00:00.300)       0:00:01.200 *******
ok: [web]

TASK [app : Point current at the release] **************************************
Sunday 06 December 2026  05:26:33 +0000 (0:00:00.120)       0:00:01.320 *******
changed: [web]

TASK [wsgi : Reload the WSGI server onto the new release] **********************
Sunday 06 December 2026  05:26:33 +0000 (0:00:00.130)       0:00:01.450 *******
changed: [web]

TASK [app : Give back the deploy lock] *****************************************
Sunday 06 December 2026  05:26:34 +0000 (0:00:01.250)       0:00:02.700 *******
ok: [web]
"""


def test_phases_adds_up_each_roles_tasks():
    spent = deploy_speed.phases(OUTPUT)
    assert dict(spent) == {"(playbook)": 0.3, "app": 0.25, "wsgi": 1.25}
