"""Jobs the worker (rq worker, Procfile) runs."""

import os


def tally(entry_id):
    """Marks an entry as counted by this job's worker; returns how many entries there are."""
    from rq import get_current_job

    from . import create_app, db
    from .models import Entry

    app = create_app()
    with app.app_context():
        entry = db.session.get(Entry, entry_id)
        entry.tallied_by = f"{get_current_job().id}:{os.getpid()}"
        db.session.commit()
        return db.session.query(Entry).count()
