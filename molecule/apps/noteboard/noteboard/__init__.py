"""noteboard: notes, a job queue and a clock, in an application factory.

Configuration: defaults, then instance/config.py when there is one, then FLASK_*
environment variables (app.config.from_prefixed_env), and SECRET_KEY from the
environment.
"""

import os

from flask import Flask

__version__ = "1.0"


def create_app(test_config=None):
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("SECRET_KEY", "dev"),
        DATABASE=os.path.join(app.instance_path, "noteboard.sqlite"),
        VERSION=__version__,
    )
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        app.config.from_prefixed_env()
    else:
        app.config.from_mapping(test_config)
    os.makedirs(app.instance_path, exist_ok=True)

    from flask_wtf.csrf import CSRFProtect

    CSRFProtect(app)

    from . import db, views

    db.init_app(app)
    app.register_blueprint(views.bp)
    return app
