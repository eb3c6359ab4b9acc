"""nginx_tls_mode: files (debian13): the user's key is copied without ever being logged."""

import testlib

testinfra_hosts = ["ansible://fd-default-debian13"]

LIMIT = "fd-default-debian13"


def test_the_private_key_is_copied_but_never_logged(host, hostvars, https):
    with open(hostvars["nginx_tls_key_src"], encoding="ascii") as given:
        key = given.read()
    body = "".join(line for line in key.splitlines() if "PRIVATE KEY" not in line)
    host.check_output("rm /etc/nginx/ssl/hello.key")
    # The copy must run again; verbose and with --diff, as a user might.
    result = testlib.run_playbook("site.yml", LIMIT, options=["-vv", "--diff"])
    assert result.returncode == 0, result.stdout[-3000:]
    assert "TASK [nginx : Copy the private key]" in result.stdout
    output = result.stdout + result.stderr
    for line in key.splitlines()[1:-1]:
        assert line not in output
    assert body[:40] not in output.replace("\n", "")
    copied = host.file("/etc/nginx/ssl/hello.key")
    assert copied.content_string == key and copied.mode == 0o600
    assert https("/healthz").status == 200
