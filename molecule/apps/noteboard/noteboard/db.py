import os
import sqlite3
import time

import click
from flask import current_app, g

SCHEMA = """
CREATE TABLE IF NOT EXISTS note (id INTEGER PRIMARY KEY, body TEXT NOT NULL, version TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job (
    id INTEGER PRIMARY KEY, seconds REAL NOT NULL, state TEXT NOT NULL DEFAULT 'queued',
    enqueued_by TEXT, worker TEXT, started REAL, finished REAL);
CREATE TABLE IF NOT EXISTS tick (
    id INTEGER PRIMARY KEY, started REAL NOT NULL, finished REAL, pid INTEGER, release TEXT, user TEXT);
"""


def connect(path):
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def get_db():
    if "db" not in g:
        g.db = connect(current_app.config["DATABASE"])
    return g.db


def close_db(exc=None):
    db = g.pop("db", None)
    if db is not None:
        db.close()


def release():
    """The directory this process runs in (a deploy tool's release directory)."""
    return os.path.basename(os.getcwd())


@click.command("init-db")
def init_db_command():
    """Create the tables that are missing (run on every deploy)."""
    get_db().executescript(SCHEMA)
    click.echo("Initialized the database.")


@click.command("tick")
@click.option("--seconds", default=3.0, help="How long the tick takes.")
def tick_command(seconds):
    """A scheduled job: records when it started and finished, and where it ran."""
    import getpass

    db = get_db()
    cur = db.execute("INSERT INTO tick (started, pid, release, user) VALUES (?, ?, ?, ?)",
                     (time.time(), os.getpid(), release(), getpass.getuser()))
    time.sleep(seconds)
    db.execute("UPDATE tick SET finished = ? WHERE id = ?", (time.time(), cur.lastrowid))
    click.echo(f"tick {cur.lastrowid} in {release()}")


@click.command("stats")
def stats_command():
    """Counts, for operators (flask stats through the one-off command)."""
    import getpass

    db = get_db()
    notes = db.execute("SELECT count(*) FROM note").fetchone()[0]
    click.echo(f"user={getpass.getuser()} notes={notes} release={release()} "
               f"database={current_app.config['DATABASE']}")


def init_app(app):
    app.teardown_appcontext(close_db)
    app.cli.add_command(init_db_command)
    app.cli.add_command(tick_command)
    app.cli.add_command(stats_command)
