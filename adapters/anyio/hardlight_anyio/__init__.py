"""hardlight_anyio: HardLight bound to anyio (in progress: see the README's status table)."""

__all__: list[str] = []
