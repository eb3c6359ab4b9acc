"""pytest fixtures shared by the scenarios: `from fixtures import *` in a conftest."""

import pytest
import testlib

__all__ = ["addresses", "hostvars", "server_cert", "https", "profile"]


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
