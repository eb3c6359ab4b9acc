"""pytest fixtures shared by the scenarios: `from fixtures import *` in a conftest."""

import pytest
import testlib

__all__ = ["addresses", "hostvars", "server_cert", "https", "profile", "web"]


@pytest.fixture
def addresses(host):
    """(server IP, controller IP) on the scenario's docker network."""
    return testlib.network_addresses(host.backend.host)


@pytest.fixture
def hostvars(host):
    return host.ansible.get_variables()


@pytest.fixture
def profile(hostvars):
    return hostvars.get("flaskdeploy_profile", "https")


@pytest.fixture
def server_cert(host, hostvars, tmp_path):
    """The certificate nginx serves, fetched from the server, as a CA file."""
    path = tmp_path / "server.crt"
    name = hostvars.get("nginx_site_name", hostvars.get("app_name", "hello"))
    path.write_text(host.file(f"/etc/nginx/ssl/{name}.crt").content_string)
    return str(path)


@pytest.fixture
def https(addresses, server_cert, hostvars):
    """Requests through nginx over verified HTTPS."""
    server_ip, _ = addresses
    server_name = hostvars["nginx_server_names"][0]

    def _request(path, **kwargs):
        return testlib.request(server_ip, path, cafile=server_cert, server_name=server_name,
                               **kwargs)

    return _request


@pytest.fixture
def web(https, hostvars):
    """Requests through nginx as a browser sends them: Host with the public port
    (nginx_https_public_port), cookies kept between requests (Flask's session carries
    the CSRF token)."""
    public = hostvars["nginx_server_names"][0]
    if str(hostvars.get("nginx_https_public_port", 443)) != "443":
        public += f":{hostvars['nginx_https_public_port']}"
    jar = {}

    def _request(path, method="GET", form=None, headers=None):
        headers = {"Host": public, **(headers or {})}
        if jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        body = None
        if form is not None:
            from urllib.parse import urlencode

            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        resp = https(path, method=method, body=body, headers=headers)
        cookie = resp.header("set-cookie")
        if cookie:
            name, _, value = cookie.split(";", 1)[0].partition("=")
            jar[name] = value
        return resp

    _request.origin = f"https://{public}"
    return _request
