"""The contract: what plugins implement (interfaces, types, parameters, errors, hook specifications)
and how the harness finds and names them (registry, identity)."""
