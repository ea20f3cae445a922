"""Conformance tools for HardLight ports: codec vectors, offline replay of recorded
reference traffic, and live checks against any server (``python -m hardlight_conformance``)."""

__all__: list[str] = []
