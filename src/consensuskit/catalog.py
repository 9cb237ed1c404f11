"""The protocols and services this build ships, by name.

The one module that names every protocol and service: core/ defines what a protocol
offers (``core.registry.ProtocolSpec``) and what a service offers
(``core.service.ServiceSpec``) and knows none of them; the simulator, the server and the
CLI take a ``Registry`` and default to this one.

Plug-in point: when the environment variable ``CONSENSUSKIT_CATALOG`` names a
``module:function``, ``default_registry()`` returns what that function returns (a
``Registry``; it may start from ``builtin_registry()`` and add its own protocols and
services).  Subprocesses inherit it, so a sweep's workers and a server started by
``consensuskit up`` see the same catalog as the command that started them.
"""

from __future__ import annotations

import os

from consensuskit.core.registry import ProtocolSpec, Registry
from consensuskit.core.service import ServiceSpec, resolve
from consensuskit.protocols.paxos import basic_paxos_spec, fast_paxos_spec, multipaxos_spec
from consensuskit.protocols.raft import raft_spec
from consensuskit.services.kv import kv_service

CATALOG_ENV = "CONSENSUSKIT_CATALOG"


def default_registry(*, plugin: bool = True) -> Registry:
    """Every protocol this build ships (the plug-in's catalog when one is set, see above)."""
    if plugin and os.environ.get(CATALOG_ENV):
        return plugin_registry(os.environ[CATALOG_ENV])
    registry = Registry()
    registry.add(raft_spec())
    registry.add(multipaxos_spec())
    registry.add(basic_paxos_spec())
    registry.add(fast_paxos_spec())
    add_services(registry)
    return registry


def builtin_registry() -> Registry:
    """Every protocol and service this build ships, whatever the environment says."""
    return default_registry(plugin=False)


def add_services(registry: Registry) -> None:
    """Register the services this build ships."""
    registry.add_service(kv_service())


def plugin_registry(reference: str) -> Registry:
    """The registry a ``module:function`` plug-in returns."""
    registry = resolve(reference)()
    if not isinstance(registry, Registry):
        raise TypeError(f"{CATALOG_ENV}={reference} returned {type(registry).__name__}, not a Registry")
    return registry


def service_for(registry: Registry, protocol: ProtocolSpec, name: str | None = None) -> ServiceSpec:
    """The service ``protocol`` runs (``name`` or its default).  A registry built with
    protocols only (as tests do) borrows the built-in services.  KeyError naming the
    valid choices for an unknown service or one the protocol cannot serve."""
    if not registry.services:
        borrowed = Registry()
        add_services(borrowed)
        return borrowed.service_for(protocol, name)
    return registry.service_for(protocol, name)


def service_names(registry: Registry | None = None) -> list[str]:
    registry = registry or default_registry()
    if not registry.services:
        registry = builtin_registry()
    return registry.services.names()
