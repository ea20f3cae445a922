"""hardlight: the user-facing package of the Python HardLight port.

Subcommands run as ``python -m hardlight <command>``:

* ``schema package.module:Service [-o FILE.json] [--dts FILE.d.ts]``: a JSON
  description of a service (methods in wire order, state, events, types) for
  clients in other languages, e.g. the browser client in ``clients/js``.
"""

__all__: list[str] = []
