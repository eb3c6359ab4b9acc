"""nginx_tls_mode: acme against pebble, on two load balancers for one name: issuance
over HTTP-01 (for fd-acme-lb2 through fd-acme-web, the name's only address), Mozilla's
intermediate profile (sslyze), HSTS, and renewal with an nginx reload. Every test that
takes `host` runs on both balancers."""

import socket
import ssl
import subprocess
import sys

import pytest
import testinfra
import testlib
from cryptography import x509

WEB, LB2 = "fd-acme-web", "fd-acme-lb2"
testinfra_hosts = [f"ansible://{WEB}", f"ansible://{LB2}"]

# The site (and certificate) name on a balancer: nginx_site_name's default there.
SITE = "app"
NAME = "web.acme.test"
PEBBLE = "fd-acme-pebble"
CHALLENGES = "/var/www/acme/.well-known/acme-challenge"


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


@pytest.fixture
def other_ip(host):
    """The address of the other balancer."""
    return testlib.network_addresses(LB2 if host.backend.host == WEB else WEB)[0]


def served_certificate(address):
    """The leaf certificate nginx serves for NAME (not verified)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((address, 443), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=NAME) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def test_nginx_serves_a_certificate_pebble_issued(addresses, other_ip, acme_https):
    # Verified against pebble's root alone (not the self-signed placeholder). On
    # fd-acme-lb2 that means pebble found its token through fd-acme-web.
    resp = acme_https("/healthz")
    assert resp.status == 200
    cert = served_certificate(addresses[0])
    assert "Pebble Intermediate" in cert.issuer.rfc4514_string()
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [NAME]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 90
    # Its own certificate and key, not a copy of the other balancer's.
    other_cert = served_certificate(other_ip)
    assert cert.serial_number != other_cert.serial_number
    assert cert.public_key().public_numbers() != other_cert.public_key().public_numbers()


def test_ocsp_stapling_because_the_certificate_names_a_responder(host, addresses):
    cert = served_certificate(addresses[0])
    access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [d.access_location.value for d in access] == ["http://pebble.acme.test:4002"]
    conf = host.file(f"/etc/nginx/conf.d/{SITE}.conf").content_string
    assert "ssl_stapling on;" in conf and "ssl_stapling_verify on;" in conf
    # nginx reaches the responder through the host's name servers.
    assert "resolver 127.0.0.11 valid=300s;" in conf


def test_the_key_is_readable_by_root_only(host):
    key = host.file(f"/etc/letsencrypt/live/{SITE}/privkey.pem")
    target = host.file(host.check_output(f"readlink -f /etc/letsencrypt/live/{SITE}/privkey.pem"))
    assert key.is_symlink
    assert target.user == "root" and target.mode & 0o077 == 0


def test_hsts_with_a_trusted_certificate(acme_https):
    assert acme_https("/").header("strict-transport-security") == "max-age=63072000"


def test_challenges_are_answered_over_http_and_the_rest_redirects(host, addresses):
    server_ip, _ = addresses
    host.check_output(f"echo token-body > {CHALLENGES}/test-token")
    try:
        challenge = testlib.request(server_ip, "/.well-known/acme-challenge/test-token",
                                    scheme="http", server_name=NAME)
        assert challenge.status == 200 and challenge.body == b"token-body\n"
    finally:
        host.check_output(f"rm -f {CHALLENGES}/test-token")
    other = testlib.request(server_ip, "/healthz", scheme="http", server_name=NAME)
    assert other.status == 301
    assert other.header("location") == f"https://{NAME}/healthz"


def test_renewal_is_scheduled_and_reloads_nginx(host, addresses, acme_https):
    assert host.service("certbot.timer").is_enabled
    assert host.service("certbot.timer").is_running
    conf = host.file(f"/etc/letsencrypt/renewal/{SITE}.conf").content_string
    assert "server = https://pebble.acme.test:14000/dir" in conf
    assert "authenticator = webroot" in conf
    before = served_certificate(addresses[0]).serial_number
    # What certbot.timer runs, forced: a new certificate, and the deploy hook reloads nginx.
    host.check_output("certbot renew --force-renewal --no-random-sleep-on-renew -q")
    testlib.wait_for(lambda: served_certificate(addresses[0]).serial_number != before,
                     timeout=30, what="nginx serving the renewed certificate")
    assert acme_https("/healthz").status == 200


def test_a_challenge_is_answered_by_whichever_balancer_has_the_token(host, addresses, other_ip):
    # The CA may check a balancer's token on the other one: each asks its peer
    # (nginx_acme_peers) for a token it has no file of.
    token = f"peer-token-{host.backend.host}"
    host.check_output(f"echo {token} > {CHALLENGES}/{token}")
    try:
        via_peer = testlib.request(other_ip, f"/.well-known/acme-challenge/{token}",
                                   scheme="http", server_name=NAME)
        assert via_peer.status == 200 and via_peer.body == f"{token}\n".encode()
        # A peer's own request is not passed on again (no loops between balancers).
        asked_by_peer = testlib.request(other_ip, f"/.well-known/acme-challenge/{token}",
                                        scheme="http", server_name=NAME,
                                        headers={"X-Flaskdeploy-Acme-Peer": "1"})
        assert asked_by_peer.status == 404
    finally:
        host.check_output(f"rm -f {CHALLENGES}/{token}")
    nowhere = testlib.request(addresses[0], "/.well-known/acme-challenge/no-such-token",
                              scheme="http", server_name=NAME)
    assert nowhere.status == 404


# The tests below take no `host`: they run once, not once per balancer.


def test_sslyze_finds_the_server_compliant_with_mozilla_intermediate(pebble_root):
    # fd-acme-lb2 has the same nginx configuration.
    server_ip, _ = testlib.network_addresses(WEB)
    result = subprocess.run(
        [sys.executable, "-m", "sslyze", "--mozilla_config=intermediate",
         f"--certinfo_ca_file={pebble_root}", f"{NAME}:443{{{server_ip}}}"],
        capture_output=True, text=True, timeout=300)
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"{NAME}:443: OK - Compliant." in result.stdout


def test_a_balancer_added_to_a_running_site_gets_its_certificate():
    """fd-acme-web serves a configuration from before fd-acme-lb2 was in the inventory
    (it does not ask a peer) and fd-acme-lb2 has no certificate: the run reloads
    fd-acme-web with its peer before fd-acme-lb2 asks the CA, whose check goes to
    fd-acme-web."""
    web, lb2 = testlib.container(WEB), testlib.container(LB2)
    site = f"/etc/nginx/conf.d/{SITE}.conf"
    lb2_ip = testlib.network_addresses(LB2)[0]
    before = served_certificate(lb2_ip).serial_number
    for box, command in [
            (web, f"sed -i '/try_files $uri @acme_peers;/d' {site} && systemctl reload nginx"),
            (lb2, f"certbot delete --non-interactive --cert-name {SITE}")]:
        code, output = box.exec_run(["sh", "-c", command])
        assert code == 0, output.decode()
    result = testlib.run_playbook("site.yml", "appservers,loadbalancers")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "try_files $uri @acme_peers;" in web.exec_run(["cat", site]).output.decode()
    cert = served_certificate(lb2_ip)
    assert "Pebble Intermediate" in cert.issuer.rfc4514_string()
    assert cert.serial_number != before


def test_a_rerun_keeps_the_certificates():
    addresses = [testlib.network_addresses(name)[0] for name in (WEB, LB2)]
    serials = [served_certificate(address).serial_number for address in addresses]
    result = testlib.run_playbook("site.yml", "appservers,loadbalancers")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Request the certificate" not in result.stdout
    assert [served_certificate(address).serial_number for address in addresses] == serials
