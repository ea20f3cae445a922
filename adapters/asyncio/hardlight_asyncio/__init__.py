"""hardlight_asyncio: HardLight bound to asyncio (in progress: see the README's status table)."""

__all__: list[str] = []
