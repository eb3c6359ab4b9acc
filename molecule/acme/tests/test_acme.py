"""nginx_tls_mode: acme against pebble: issuance over HTTP-01, Mozilla's intermediate
profile (sslyze), HSTS, and renewal with an nginx reload."""

import socket
import ssl
import subprocess
import sys

import pytest
import testinfra
import testlib
from cryptography import x509

testinfra_hosts = ["ansible://fd-acme-web"]

APP = "hello"
NAME = "web.acme.test"
PEBBLE = "fd-acme-pebble"


@pytest.fixture(scope="module")
def pebble_root(tmp_path_factory):
    """The root pebble issues under (random at each start), from its management API,
    fetched over HTTPS verified with the listener's CA made in prepare.yml."""
    listener_ca = testlib.ephemeral_dir() / "pebble" / "ca.crt"
    pebble_ip, _ = testlib.network_addresses(PEBBLE)
    resp = testlib.request(pebble_ip, "/roots/0", port=15000, cafile=str(listener_ca),
                           server_name="pebble.acme.test")
    assert resp.status == 200
    path = tmp_path_factory.mktemp("pebble") / "root.pem"
    path.write_bytes(resp.body)
    return str(path)


@pytest.fixture
def acme_https(addresses, pebble_root):
    """HTTPS to the web server, verified against pebble's root only."""
    server_ip, _ = addresses

    def _request(path, **kwargs):
        return testlib.request(server_ip, path, cafile=pebble_root, server_name=NAME, **kwargs)

    return _request


def served_certificate(address):
    """The leaf certificate nginx serves for NAME (not verified)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((address, 443), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=NAME) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def test_nginx_serves_a_certificate_pebble_issued(addresses, acme_https):
    # Verified against pebble's root alone (not the self-signed placeholder).
    resp = acme_https("/healthz")
    assert resp.status == 200
    cert = served_certificate(addresses[0])
    assert "Pebble Intermediate" in cert.issuer.rfc4514_string()
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [NAME]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 90


def test_ocsp_stapling_because_the_certificate_names_a_responder(host, addresses):
    cert = served_certificate(addresses[0])
    access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [d.access_location.value for d in access] == ["http://pebble.acme.test:4002"]
    conf = host.file(f"/etc/nginx/conf.d/{APP}.conf").content_string
    assert "ssl_stapling on;" in conf and "ssl_stapling_verify on;" in conf
    # nginx reaches the responder through the host's name servers.
    assert "resolver 127.0.0.11 valid=300s;" in conf


def test_the_key_is_readable_by_root_only(host):
    key = host.file(f"/etc/letsencrypt/live/{APP}/privkey.pem")
    target = host.file(host.check_output(f"readlink -f /etc/letsencrypt/live/{APP}/privkey.pem"))
    assert key.is_symlink
    assert target.user == "root" and target.mode & 0o077 == 0


def test_hsts_with_a_trusted_certificate(acme_https):
    assert acme_https("/").header("strict-transport-security") == "max-age=63072000"


def test_challenges_are_answered_over_http_and_the_rest_redirects(host, addresses):
    server_ip, _ = addresses
    host.check_output(
        "echo token-body > /var/www/acme/.well-known/acme-challenge/test-token")
    try:
        challenge = testlib.request(server_ip, "/.well-known/acme-challenge/test-token",
                                    scheme="http", server_name=NAME)
        assert challenge.status == 200 and challenge.body == b"token-body\n"
    finally:
        host.check_output("rm -f /var/www/acme/.well-known/acme-challenge/test-token")
    other = testlib.request(server_ip, "/healthz", scheme="http", server_name=NAME)
    assert other.status == 301
    assert other.header("location") == f"https://{NAME}/healthz"


def test_sslyze_finds_the_server_compliant_with_mozilla_intermediate(addresses, pebble_root):
    server_ip, _ = addresses
    result = subprocess.run(
        [sys.executable, "-m", "sslyze", "--mozilla_config=intermediate",
         f"--certinfo_ca_file={pebble_root}", f"{NAME}:443{{{server_ip}}}"],
        capture_output=True, text=True, timeout=300)
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"{NAME}:443: OK - Compliant." in result.stdout


def test_renewal_is_scheduled_and_reloads_nginx(host, addresses, acme_https):
    assert host.service("certbot.timer").is_enabled
    assert host.service("certbot.timer").is_running
    conf = host.file(f"/etc/letsencrypt/renewal/{APP}.conf").content_string
    assert "server = https://pebble.acme.test:14000/dir" in conf
    assert "authenticator = webroot" in conf
    before = served_certificate(addresses[0]).serial_number
    # What certbot.timer runs, forced: a new certificate, and the deploy hook reloads nginx.
    host.check_output("certbot renew --force-renewal --no-random-sleep-on-renew -q")
    testlib.wait_for(lambda: served_certificate(addresses[0]).serial_number != before,
                     timeout=30, what="nginx serving the renewed certificate")
    assert acme_https("/healthz").status == 200


def test_a_rerun_keeps_the_certificate(addresses):
    serial = served_certificate(addresses[0]).serial_number
    result = testlib.run_playbook("site.yml", "fd-acme-web")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Request the certificate" not in result.stdout
    assert served_certificate(addresses[0]).serial_number == serial
