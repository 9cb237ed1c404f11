"""Shared vocabulary of every protocol: ids, messages and their codec, the Env a node
talks to, client commands, storage interfaces and the protocol registry."""
