"""Small topology files for the test harnesses, built from host, service and firewall blocks.

Each builder returns one block of TOML in the seed's layout (foobar_ref/topologies/seed.toml);
`topology_text` joins a site table, the hosts and the firewalls into a whole file.  Values are
written by `toml_value`: strings and paths quoted, booleans as true/false, lists and tables inline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from foobar_ref import topology

SEED_ROOT_HINTS = topology.default_path().parent / "root.hints"


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _table(header: str, fields: Mapping[str, object], indent: str = "") -> str:
    lines = [f"{indent}{header}"]
    lines += [f"{indent}{key} = {toml_value(value)}" for key, value in fields.items() if value is not None]
    return "\n".join(lines)


def service(name: str, kind: str, ports: Mapping[str, int], **options: object) -> str:
    """One `[[hosts.services]]` block; `options` are the kind's own keys (store, backends, read_from ...)."""
    return _table("[[hosts.services]]", {"name": name, "kind": kind, "ports": ports, **options}, indent="  ")


def host(name: str, role: str, address: str, inner: str | None = None, services: Iterable[str] = ()) -> str:
    """One `[[hosts]]` block followed by its services; `inner` set means a firewall owns `address`."""
    block = _table("[[hosts]]", {"name": name, "role": role, "address": address, "inner": inner})
    return "\n".join([block, *services])


def resolver(address: str, port: int, root_hints: str | Path = SEED_ROOT_HINTS, name: str = "dns") -> str:
    """The host of the required resolver service (by default with the seed's root.hints)."""
    return host(name, "dns", address, services=[service(name, "resolver", {"dns": port}, root_hints=root_hints)])


def web_store_db(web: str, store: str, db: str, ports: tuple[int, int, int]) -> list[str]:
    """A server's usual three services: `web` uses `store`, which reads and writes `db`; ports (web, store, db)."""
    web_port, store_port, db_port = ports
    return [
        service(web, "web", {"http": web_port}, store=store),
        service(store, "store", {"http": store_port}, read_from=db, write_to=db),
        service(db, "mariadb", {"mysql": db_port}),
    ]


def firewall(
    name: str,
    guards: str,
    rules: str | None = None,
    rules_file: str | None = None,
    proxy_protocol: bool = False,
) -> str:
    """One `[[firewalls]]` block: the rule set inline (`rules`) or in a file beside the topology (`rules_file`)."""
    fields = {
        "name": name,
        "guards": guards,
        "proxy_protocol": proxy_protocol,
        "rules_file": rules_file,
        "rules": rules,
    }
    return _table("[[firewalls]]", fields)


def topology_text(site: Mapping[str, object], hosts: Iterable[str], firewalls: Iterable[str] = ()) -> str:
    """A whole topology file: `[site]` (domain, entry ...), then every host, then every firewall."""
    return "\n\n".join([_table("[site]", site), *hosts, *firewalls]) + "\n"
