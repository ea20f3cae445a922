"""The reference's examples/pet.rs in Python: ``python examples/pet.py``."""

from __future__ import annotations

import asyncio

from hardlight_apps.pet import PetHandler, PetService
from hardlight_asyncio import Client, Server
from hardlight_support import ClientConfig, ServerConfig


async def main() -> int:
    """Become a dog, then a cat; print the state and the noise each time."""
    config = ServerConfig.self_signed("localhost:0")
    assert config.fingerprint is not None
    async with Server(config, PetHandler) as server:
        pinned = ClientConfig.pinned(f"localhost:{server.port}", config.fingerprint)
        async with Client(PetService, pinned) as client:
            await client.become_dog("Rex", 3, "German Shepherd")
            print(client.state())
            print(await client.make_a_noise())
            await client.become_cat("Mittens", 2, "Tabby")
            print(client.state())
            print(await client.make_a_noise())
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
