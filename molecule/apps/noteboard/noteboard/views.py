import os
import socket

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired

from .db import get_db, release

bp = Blueprint("notes", __name__)


class NoteForm(FlaskForm):
    body = StringField("Note", validators=[DataRequired()])


@bp.route("/", methods=["GET", "POST"])
def index():
    form = NoteForm()
    if form.validate_on_submit():
        get_db().execute("INSERT INTO note (body, version) VALUES (?, ?)",
                         (form.body.data, current_app.config["VERSION"]))
        return redirect(url_for("notes.index"))
    notes = get_db().execute("SELECT body, version FROM note ORDER BY id").fetchall()
    return render_template("index.html", form=form, notes=notes)


@bp.get("/notes.json")
def notes_json():
    rows = get_db().execute("SELECT body, version FROM note ORDER BY id").fetchall()
    return jsonify(notes=[dict(row) for row in rows], version=current_app.config["VERSION"],
                   release=release())


@bp.route("/jobs", methods=["GET", "POST"])
def jobs():
    """POST (a form, CSRF-protected) enqueues a job for the worker; GET lists them."""
    form = FlaskForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            return jsonify(error="bad form"), 400
        seconds = float(request.form.get("seconds", "0"))
        cur = get_db().execute("INSERT INTO job (seconds, enqueued_by) VALUES (?, ?)",
                               (seconds, f"{os.getpid()}@{release()}"))
        return jsonify(id=cur.lastrowid), 201
    rows = get_db().execute("SELECT * FROM job ORDER BY id").fetchall()
    return jsonify(jobs=[dict(row) for row in rows])


@bp.get("/jobs/<int:job_id>")
def job(job_id):
    row = get_db().execute("SELECT * FROM job WHERE id = ?", (job_id,)).fetchone()
    return (jsonify(dict(row)), 200) if row else (jsonify(error="no such job"), 404)


@bp.get("/ticks")
def ticks():
    rows = get_db().execute("SELECT * FROM tick ORDER BY id").fetchall()
    return jsonify(ticks=[dict(row) for row in rows])


@bp.get("/whoami")
def whoami():
    return jsonify(client=request.remote_addr, scheme=request.scheme, host=request.host,
                   url=url_for("notes.whoami", _external=True), hostname=socket.gethostname(),
                   release=release(), version=current_app.config["VERSION"])
