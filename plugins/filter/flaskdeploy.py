"""Filters the playbooks use to read the inventory's topology.

flaskdeploy_address: the IPv4 address the other hosts of the site reach a host on
(its data services, its WSGI backends, its ACME peer): the host's
flaskdeploy_private_address, else the address of its flaskdeploy_private_interface,
else the address of its default route (on most VPS providers the public one).

flaskdeploy_private: whether the host names a private address or interface.

Both take a host's variables: hostvars[name] | flaskdeploy_address.

flaskdeploy_topology: what the inventory's groups make of one host, computed in one
place (playbooks/vars/flaskdeploy.yml hands it to the roles):
hostvars | flaskdeploy_topology(groups, inventory_hostname).
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


def _members(groups, name):
    try:
        return list(groups[name] or [])
    except (KeyError, TypeError):
        return []


def flaskdeploy_topology(hostvars, groups, host, key=None):
    """The inventory's shape as one host of it sees it: a dict, or with key only that
    value (each is worked out only when asked for: a variable is evaluated again at
    each use, and some of these read every host's facts).

    balanced: the inventory has load balancers (app servers then serve on their own
      address, and the balancers' nginx proxies to all of them).
    appserver, balancer, database: the host's part (a host may have several).
    database_host, database_remote: where PostgreSQL and Redis run: the `databases`
      group's host, else each app server itself.
    database_clients: on the database host, the app servers' addresses (else []).
    balancer_addresses: the balancers' addresses (the only trusted proxies).
    appservers, balancers, databases: the groups' inventory names.
    acme_peers: the other balancers, address:HTTP port (ACME challenges).
    backends: on a balanced site, each app server's name and the address:port of each
      of its WSGI instances (flaskdeploy_backend_port, 8000, and up); else [].
    wsgi_servers: the WSGI servers behind this host's nginx.
    timers: whether this host runs the scheduled jobs (behind balancers only the first
      app server, so a job runs once per schedule).
    Peers' addresses come from flaskdeploy_address: a peer without facts (outside a
    --limit) and without flaskdeploy_private_address fails there, naming it."""
    def var(name, name_key, default):
        return _get(hostvars[name], name_key, default)

    appservers, balancers = _members(groups, "appservers"), _members(groups, "loadbalancers")
    databases = _members(groups, "databases")

    def backends():
        found = []
        for name in appservers if balancers else []:
            port, count = int(var(name, "flaskdeploy_backend_port", 8000)), int(var(name, "wsgi_instances", 1))
            address = flaskdeploy_address(hostvars[name])
            found.append({"name": name, "addresses": [f"{address}:{p}" for p in range(port, port + count)]})
        return found

    def wsgi_servers():
        servers = [var(name, "wsgi_server", "gunicorn") for name in appservers] if balancers \
            else [var(host, "wsgi_server", "gunicorn")]
        return list(dict.fromkeys(servers))

    values = {
        "balanced": lambda: bool(balancers),
        "appserver": lambda: host in appservers,
        "balancer": lambda: host in balancers,
        "database": lambda: host in databases,
        "database_host": lambda: databases[0] if databases else host,
        "database_remote": lambda: bool(databases),
        "database_clients": lambda: [flaskdeploy_address(hostvars[name]) for name in appservers]
        if host in databases else [],
        "appservers": lambda: appservers,
        "balancers": lambda: balancers,
        "databases": lambda: databases,
        "balancer_addresses": lambda: [flaskdeploy_address(hostvars[name]) for name in balancers],
        "acme_peers": lambda: [f"{flaskdeploy_address(hostvars[name])}:{var(name, 'nginx_http_port', 80)}"
                               for name in balancers if name != host],
        "backends": backends,
        "wsgi_servers": wsgi_servers,
        "timers": lambda: not balancers or host == (appservers or [host])[0],
    }
    if key is None:
        return {name: value() for name, value in values.items()}
    if key not in values:
        raise AnsibleFilterError(f"flaskdeploy_topology has no {key!r} (it has {', '.join(values)})")
    return values[key]()


class FilterModule:
    def filters(self):
        return {"flaskdeploy_address": flaskdeploy_address, "flaskdeploy_private": flaskdeploy_private,
                "flaskdeploy_topology": flaskdeploy_topology}
