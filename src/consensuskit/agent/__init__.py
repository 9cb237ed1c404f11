"""The membership agent: a SWIM member (protocols/swim) as a real process.

SWIM messages travel over UDP and push-pull state over TCP, every packet sealed with
AES-GCM under a shared key (memberlist's keyring); ``keyring.py`` owns the packet format
and the replay window, ``runtime.py`` the process (asyncio sockets, timers, the
incarnation file), ``commands.py`` the CLI verbs ``agent``, ``agent-keygen``, ``members``
and ``agent-demo``.
"""
