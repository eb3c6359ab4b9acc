# Managed by Ansible (flaskdeploy).
"""flaskdeploy's WSGI entry point: the app's own callable, behind the proxies it trusts.

Every WSGI server flaskdeploy runs (gunicorn, uWSGI, Waitress) and the release's
health gate load ``flaskdeploy_wsgi:application`` from this file's directory; the
app's code is found on the path the server puts its working directory on (the
release). The app needs no code of its own for either part. Settings come from the
environment (the app's app.env, written by the app role):

FLASKDEPLOY_WSGI_APP         the app as gunicorn takes it (app_wsgi_module):
                             ``module`` (its ``application``), ``module:name``,
                             ``module:factory()`` or ``module:factory("x", debug=False)``
                             with literal arguments only (parsed, never evaluated).
FLASKDEPLOY_PROXY_HOPS       reverse proxies in front whose X-Forwarded-For, -Proto,
                             -Host and -Port are honoured (app_proxy_count; 0: none).
FLASKDEPLOY_TRUSTED_PROXIES  comma-separated addresses or networks of those proxies
                             (app_trusted_proxies): the headers are honoured only on
                             requests whose peer is one of them. Empty: any peer.
"""

import ast
import importlib
import ipaddress
import os


class AppImportError(ImportError):
    pass


def parse(spec):
    """(module name, attribute name, args, kwargs) of a gunicorn-style app spec;
    args is None when the attribute is the app itself rather than a factory."""
    module_name, _, expression = spec.strip().partition(":")
    if not module_name:
        raise AppImportError("no module in the WSGI app %r" % spec)
    try:
        node = ast.parse(expression or "application", mode="eval").body
    except SyntaxError as error:
        raise AppImportError("cannot parse %r as a name or a call: %s" % (expression, error)) from None
    if isinstance(node, ast.Name):
        return module_name, node.id, None, None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        try:
            args = [ast.literal_eval(arg) for arg in node.args]
            kwargs = {keyword.arg: ast.literal_eval(keyword.value) for keyword in node.keywords}
        except ValueError:
            raise AppImportError("the arguments of %r must be literals" % expression) from None
        if None in kwargs:
            raise AppImportError("no **arguments in %r" % expression)
        return module_name, node.func.id, args, kwargs
    raise AppImportError("%r is neither a name nor a call of one" % expression)


def load(spec):
    """The WSGI callable that spec names, imported (and made by its factory)."""
    module_name, name, args, kwargs = parse(spec)
    module = importlib.import_module(module_name)
    try:
        app = getattr(module, name)
    except AttributeError:
        raise AppImportError("module %r has no %r" % (module_name, name)) from None
    if args is not None:
        app = app(*args, **kwargs)
    if not callable(app):
        raise AppImportError("%r is not a WSGI callable: %r" % (spec, app))
    return app


class TrustedProxyFix:
    """werkzeug's ProxyFix with `hops` proxies, applied only to requests whose peer
    (REMOTE_ADDR) is in `networks` (all requests when there are none)."""

    def __init__(self, app, hops, networks):
        from werkzeug.middleware.proxy_fix import ProxyFix

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


def make(environ=os.environ):
    app = load(environ.get("FLASKDEPLOY_WSGI_APP", "wsgi:application"))
    hops = int(environ.get("FLASKDEPLOY_PROXY_HOPS", "0") or 0)
    if hops > 0:
        app = TrustedProxyFix(app, hops, environ.get("FLASKDEPLOY_TRUSTED_PROXIES", "").split(","))
    return app


# Made at import, so that a worker that cannot load the app fails as it starts. (A
# lazy module attribute would not do: uWSGI looks the callable up in the module's
# dictionary.)
application = make()
