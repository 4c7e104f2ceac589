"""Worker hosts for multi-host tests: network namespaces joined to this machine.

A host is a network namespace with its own network stack, linked to this machine by
a veth pair. Its processes reach the services at the machine's end of the veth,
where TCP proxies forward to the services' loopback addresses: the machine's
RabbitMQ and PostgreSQL listen on loopback only, and RabbitMQ's guest user may log
in only from there. Nothing is shared between hosts but what crosses those proxies:
no file lock, no local socket. Creating namespaces needs root, as CI has.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from ml_worker_dev.local_stack import free_port
from tests.faults import TcpProxy


def can_make_hosts() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@dataclass
class Host:
    """A network namespace and the proxies through which it reaches the services."""

    namespace: str
    address: str  # this machine's end of the veth, where the proxies listen
    proxies: dict[str, TcpProxy] = field(default_factory=dict)

    def port(self, service: str) -> int:
        return self.proxies[service].port

    def url(self, service: str) -> str:
        return self.proxies[service].url

    def command(self, cmd: list[str]) -> list[str]:
        """``cmd``, run inside this host."""
        return ["ip", "netns", "exec", self.namespace, *cmd]

    def pid_of_client(self, port: int) -> int:
        """The process of this host whose TCP connection has this local port."""
        res = subprocess.run(
            self.command(["ss", "-Htnp", f"sport = :{port}"]),
            capture_output=True,
            text=True,
            check=True,
        )
        found = re.search(r"pid=(\d+)", res.stdout)
        if found is None:
            raise LookupError(f"no process of {self.namespace} uses port {port}")
        return int(found.group(1))


@contextmanager
def hosts(n: int, services: dict[str, tuple[str, int]]) -> Iterator[list[Host]]:
    """``n`` hosts, each reaching ``services`` (name -> loopback host, port)."""
    with ExitStack() as stack:
        made = []
        for subnet in _free_subnets(n):
            host = stack.enter_context(_host(subnet))
            for name, (target_host, target_port) in services.items():
                proxy = TcpProxy(
                    target_host, target_port, free_port(), listen_host=host.address
                )
                proxy.start()
                stack.callback(proxy.close)
                host.proxies[name] = proxy
            made.append(host)
        yield made


@contextmanager
def _host(subnet: int) -> Iterator[Host]:
    tag = uuid.uuid4().hex[:6]
    namespace, outer, inner = f"mlw-{tag}", f"mlw{tag}h", f"mlw{tag}n"
    address, inside = f"169.254.{subnet}.1", f"169.254.{subnet}.2"
    _ip("netns", "add", namespace)
    try:
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", namespace)
        _ip("addr", "add", f"{address}/30", "dev", outer)
        _ip("link", "set", outer, "up")
        _ip("-n", namespace, "addr", "add", f"{inside}/30", "dev", inner)
        _ip("-n", namespace, "link", "set", inner, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        yield Host(namespace, address)
    finally:
        # Deleting the namespace deletes its end of the veth, and so the pair.
        subprocess.run(["ip", "netns", "del", namespace], check=False)
        subprocess.run(["ip", "link", "del", outer], check=False, capture_output=True)


def _free_subnets(n: int) -> list[int]:
    """``n`` link-local /30s no interface of this machine uses yet.

    Link-local addresses are never routed beyond the link, here the veth.
    """
    used = subprocess.run(
        ["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True
    ).stdout
    free = [s for s in range(100, 250) if f"169.254.{s}." not in used]
    return random.sample(free, n)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)
