"""WSGI entry point: `gunicorn wsgi:app`, `waitress-serve wsgi:app`, uWSGI `module = wsgi:app`."""

from hello import create_app

app = create_app()
