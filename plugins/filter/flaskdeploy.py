"""Filters the playbooks use to read the inventory's topology.

flaskdeploy_address: the IPv4 address the other hosts of the site reach a host on
(its data services, its WSGI backends, its ACME peer): the host's
flaskdeploy_private_address, else the address of its flaskdeploy_private_interface,
else the address of its default route (on most VPS providers the public one).

flaskdeploy_private: whether the host names a private address or interface.

Both take a host's variables: hostvars[name] | flaskdeploy_address.
"""

from ansible.errors import AnsibleFilterError


def _get(host, key, default=None):
    try:
        value = host[key]
    except (KeyError, TypeError):
        return default
    return default if value is None else value


def flaskdeploy_private(host):
    return bool(_get(host, "flaskdeploy_private_address", "") or _get(host, "flaskdeploy_private_interface", ""))


def flaskdeploy_address(host):
    name = _get(host, "inventory_hostname", "?")
    address = _get(host, "flaskdeploy_private_address", "")
    if address:
        return str(address)
    facts = _get(host, "ansible_facts", {}) or {}
    interface = _get(host, "flaskdeploy_private_interface", "")
    if interface:
        # (Facts name an interface with its - and : as _.)
        found = facts.get(str(interface).replace("-", "_").replace(":", "_")) or {}
        ipv4 = (found.get("ipv4") or {}).get("address") if isinstance(found, dict) else None
        if not ipv4:
            raise AnsibleFilterError(
                f"flaskdeploy_private_interface of {name} is {interface}, which has no IPv4 address "
                f"on the host (its interfaces: {', '.join(facts.get('interfaces', [])) or 'no network facts'})")
        return ipv4
    default = facts.get("default_ipv4") or {}
    if not default.get("address"):
        raise AnsibleFilterError(f"{name} has no default route's IPv4 address in its facts: set "
                                 f"flaskdeploy_private_address or flaskdeploy_private_interface for it")
    return default["address"]


class FilterModule:
    def filters(self):
        return {"flaskdeploy_address": flaskdeploy_address, "flaskdeploy_private": flaskdeploy_private}
