"""The recorded reference apps, wire-identical to their Rust originals.

``counter`` (the crate README example), ``pet`` and ``todo`` (the crate's
examples) and ``chat`` (written for the recorded suite). Each module exports the
service declaration, its state and event types, and a handler class.
"""

from . import chat, counter, pet, todo

APPS = {"counter": counter, "pet": pet, "todo": todo, "chat": chat}

__all__ = ["APPS", "chat", "counter", "pet", "todo"]
