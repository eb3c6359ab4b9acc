"""WSGI entry point: `gunicorn hello.wsgi:app`, `waitress-serve hello.wsgi:app`, uWSGI `module = hello.wsgi:app`."""

from hello import create_app

app = create_app()
