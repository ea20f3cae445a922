"""hardlight_threads: HardLight bound to threads (in progress: see the README's status table)."""

__all__: list[str] = []
