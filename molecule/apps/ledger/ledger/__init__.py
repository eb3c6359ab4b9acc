"""ledger: entries in PostgreSQL, jobs on Redis, in an application factory.

Configuration from the environment, as twelve-factor apps take it: DATABASE_URL,
REDIS_URL, SECRET_KEY.
"""

import os

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

__version__ = "1.0"

db = SQLAlchemy()
migrate = Migrate()


def create_app(test_config=None):
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("SECRET_KEY", "dev"),
        SQLALCHEMY_DATABASE_URI=os.environ.get("DATABASE_URL", "sqlite://"),
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        REDIS_URL=os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
        VERSION=__version__,
    )
    if test_config:
        app.config.from_mapping(test_config)
    db.init_app(app)
    migrate.init_app(app, db)
    CSRFProtect(app)

    from . import views

    app.register_blueprint(views.bp)
    return app
