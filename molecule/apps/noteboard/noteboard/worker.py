"""The worker: takes jobs from the job table, one at a time.

SIGTERM (systemd stopping or restarting it) means: finish the job in hand, then
exit, as rq and celery workers do.
"""

import getpass
import os
import signal
import time

from . import create_app
from .db import connect, release

stopping = False


def stop(signum, frame):
    global stopping
    stopping = True


def main():
    signal.signal(signal.SIGTERM, stop)
    app = create_app()
    db = connect(app.config["DATABASE"])
    me = f"{getpass.getuser()}:{os.getpid()}@{release()}"
    print(f"worker {me} ready", flush=True)
    while not stopping:
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT id, seconds FROM job WHERE state = 'queued' ORDER BY id LIMIT 1").fetchone()
        if row is None:
            db.execute("COMMIT")
            time.sleep(0.2)
            continue
        db.execute("UPDATE job SET state = 'running', worker = ?, started = ? WHERE id = ?",
                   (me, time.time(), row["id"]))
        db.execute("COMMIT")
        deadline = time.monotonic() + row["seconds"]
        while time.monotonic() < deadline:  # the work; SIGTERM does not cut it short
            time.sleep(0.05)
        db.execute("UPDATE job SET state = 'done', finished = ? WHERE id = ?", (time.time(), row["id"]))
        print(f"worker {me} did job {row['id']}", flush=True)
    print(f"worker {me} stopped", flush=True)


if __name__ == "__main__":
    main()
