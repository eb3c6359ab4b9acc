from datetime import datetime, timezone

from . import db


class Entry(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    body = db.Column(db.String(200), nullable=False)
    created = db.Column(db.DateTime(timezone=True), nullable=False,
                        default=lambda: datetime.now(timezone.utc))
    # Set by the worker: the job that counted the entries.
    tallied_by = db.Column(db.String(64))
