"""A small Flask application used to demonstrate and test flaskdeploy.

Configuration comes from the environment (systemd's EnvironmentFile):

SECRET_KEY          signs sessions; required outside of testing.
APP_VERSION         reported by /healthz and /version; defaults to __version__.

Like most Flask apps it has no proxy code of its own: the client address, scheme
and host it reports come from the WSGI environ as flaskdeploy's entry point leaves
it (werkzeug's ProxyFix for the proxies in front).

/healthz and /version also report the release flaskdeploy deployed: the first word
of the REVISION file in the working directory (the release the server runs from).

/ws is a WebSocket echo (flask-sock under gunicorn or Werkzeug's server, uWSGI's own
API under uWSGI), /events a stream of Server-Sent Events: the real-time routes the
tests reach through nginx.
"""

import json
import os
import socket
import time
from pathlib import Path

from flask import Flask, Response, jsonify, render_template, request, stream_with_context, url_for
from flask_sock import Sock

try:  # the module uWSGI gives the app it runs
    import uwsgi
except ImportError:
    uwsgi = None

__version__ = "1.0.0"


def deployed_release(directory=None):
    """The release id from REVISION in directory (default: the working directory)."""
    try:
        text = (Path(directory or os.getcwd()) / "REVISION").read_text(encoding="utf-8")
    except OSError:
        return None
    words = text.split()
    return words[0] if words else None


def create_app(config=None):
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY")
    app.config["APP_VERSION"] = os.environ.get("APP_VERSION", __version__)
    app.config["APP_RELEASE"] = deployed_release()
    if config:
        app.config.update(config)
    if not app.config["SECRET_KEY"] and not app.config.get("TESTING"):
        raise RuntimeError("SECRET_KEY is not set")

    @app.get("/")
    def index():
        return render_template("index.html", version=app.config["APP_VERSION"])

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", version=app.config["APP_VERSION"], release=app.config["APP_RELEASE"])

    @app.get("/version")
    def version():
        return jsonify(version=app.config["APP_VERSION"], release=app.config["APP_RELEASE"])

    @app.get("/whoami")
    def whoami():
        return jsonify(
            client=request.remote_addr,
            scheme=request.scheme,
            host=request.host,
            url=url_for("whoami", _external=True),
            hostname=socket.gethostname(),
            pid=os.getpid(),
            server=request.environ.get("SERVER_SOFTWARE", ""),
            # The port the WSGI server itself listens on (one per instance), not
            # the one a proxy forwarded.
            server_port=request.environ.get("werkzeug.proxy_fix.orig", request.environ).get("SERVER_PORT", ""),
        )

    @app.post("/echo")
    def echo():
        data = request.get_data()
        return jsonify(length=len(data))

    @app.get("/events")
    def events():
        """count Server-Sent Events, interval seconds apart; nginx passes each on as it
        comes (X-Accel-Buffering: no)."""
        count = max(1, min(request.args.get("count", 3, type=int), 100))
        interval = max(0.0, min(request.args.get("interval", 1.0, type=float), 10.0))

        def stream():
            for n in range(count):
                if n:
                    time.sleep(interval)
                event = {"n": n, "version": app.config["APP_VERSION"], "sent": time.time()}
                yield f"id: {n}\ndata: {json.dumps(event)}\n\n"

        return Response(stream_with_context(stream()), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def answer(message):
        """What the echo sends back: the message with the version that answered."""
        return f"{app.config['APP_VERSION']}: {message}"

    if uwsgi is None:
        sock = Sock(app)

        @sock.route("/ws")
        def echo_socket(ws):
            while True:
                ws.send(answer(ws.receive()))

    else:
        # flask-sock cannot take a connection from uWSGI; uWSGI's own API can.
        # (websocket=True: Werkzeug routes a handshake only to such a rule.)
        @app.route("/ws", websocket=True)
        def echo_socket_uwsgi():
            uwsgi.websocket_handshake()
            try:
                while True:
                    uwsgi.websocket_send(answer(uwsgi.websocket_recv().decode()).encode())
            except OSError:  # the client closed it
                return ""

    return app
