"""The real runtime: the same protocol objects as the simulator, over TCP and disk.

wal.py (durable Storage), transport.py (authenticated peer TCP), runtime.py (the Env that
drives a node: persist -> send -> apply with group commit), http_api.py (client API),
cluster.py (``consensuskit up``).
"""
