import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from fixtures import *  # noqa: E402,F401,F403

# CI runs the first-run test as a job of its own, beside the scenarios
# (molecule/scripts/test.sh sets FLASKDEPLOY_FIRST_RUN_JOB): the scenario's verify
# leaves it out then. It needs none of the scenario's servers.
import os  # noqa: E402

collect_ignore = ["test_first_run.py"] if os.environ.get("FLASKDEPLOY_FIRST_RUN_JOB") else []
