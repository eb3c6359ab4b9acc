from flask import Blueprint, current_app, jsonify, redirect, render_template, url_for
from flask_wtf import FlaskForm
from redis import Redis
from rq import Queue
from rq.job import Job
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from . import db
from .models import Entry

bp = Blueprint("ledger", __name__)


class EntryForm(FlaskForm):
    body = StringField("Entry", validators=[DataRequired(), Length(max=200)])


def redis():
    return Redis.from_url(current_app.config["REDIS_URL"])


@bp.route("/", methods=["GET", "POST"])
def index():
    form = EntryForm()
    if form.validate_on_submit():
        entry = Entry(body=form.body.data)
        db.session.add(entry)
        db.session.commit()
        # The worker counts it (RQ, on Redis).
        Queue("ledger", connection=redis()).enqueue("ledger.jobs.tally", entry.id, job_id=f"tally-{entry.id}")
        return redirect(url_for("ledger.index"))
    entries = db.session.execute(db.select(Entry).order_by(Entry.id)).scalars().all()
    return render_template("index.html", form=form, entries=entries)


@bp.get("/entries.json")
def entries_json():
    entries = db.session.execute(db.select(Entry).order_by(Entry.id)).scalars().all()
    return jsonify(entries=[{"id": e.id, "body": e.body, "tallied_by": e.tallied_by} for e in entries],
                   version=current_app.config["VERSION"])


@bp.get("/jobs/<job_id>")
def job(job_id):
    job = Job.fetch(job_id, connection=redis())
    return jsonify(id=job.id, status=job.get_status(), result=job.return_value())
