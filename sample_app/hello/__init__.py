"""A small Flask application used to demonstrate and test flaskdeploy.

Configuration comes from the environment (systemd's EnvironmentFile):

SECRET_KEY          signs sessions; required outside of testing.
PROXY_FIX_COUNT     how many reverse proxies (nginx) stand in front of the app.
                    The app trusts that many X-Forwarded-* hops and no more, so a
                    client cannot spoof its address. 0 (the default) trusts none.
TRUSTED_PROXIES     comma-separated addresses or networks of those proxies (e.g. the
                    load balancers). When set, X-Forwarded-* are honoured only on
                    requests whose peer is one of them; a client that reaches the
                    app directly cannot spoof its address. Empty: any peer.
APP_VERSION         reported by /healthz and /version; defaults to __version__.

/healthz and /version also report the release flaskdeploy deployed: the first word
of the REVISION file in the working directory (the release the server runs from).
"""

import ipaddress
import os
import socket
from pathlib import Path

from flask import Flask, jsonify, render_template, request
from werkzeug.middleware.proxy_fix import ProxyFix

__version__ = "1.0.0"


def deployed_release(directory=None):
    """The release id from REVISION in directory (default: the working directory)."""
    try:
        text = (Path(directory or os.getcwd()) / "REVISION").read_text(encoding="utf-8")
    except OSError:
        return None
    words = text.split()
    return words[0] if words else None


class TrustedProxyFix:
    """ProxyFix, applied only to requests from the given networks."""

    def __init__(self, app, hops, networks):
        self.app = app
        self.fixed = ProxyFix(app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
        self.networks = [ipaddress.ip_network(n.strip(), strict=False) for n in networks if n.strip()]

    def trusted(self, peer):
        if not self.networks:
            return True
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def __call__(self, environ, start_response):
        if self.trusted(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)


def create_app(config=None):
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY")
    app.config["PROXY_FIX_COUNT"] = int(os.environ.get("PROXY_FIX_COUNT", "0"))
    app.config["TRUSTED_PROXIES"] = os.environ.get("TRUSTED_PROXIES", "").split(",")
    app.config["APP_VERSION"] = os.environ.get("APP_VERSION", __version__)
    app.config["APP_RELEASE"] = deployed_release()
    if config:
        app.config.update(config)
    if not app.config["SECRET_KEY"] and not app.config.get("TESTING"):
        raise RuntimeError("SECRET_KEY is not set")

    hops = app.config["PROXY_FIX_COUNT"]
    if hops > 0:
        app.wsgi_app = TrustedProxyFix(app.wsgi_app, hops, app.config["TRUSTED_PROXIES"])

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

    return app
