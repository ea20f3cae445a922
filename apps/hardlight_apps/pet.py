"""The pet app (the reference's ``examples/pet.rs``)."""

from __future__ import annotations

import msgspec

from hardlight_core import Handler, Service, Variant, u8

__all__ = ["Cat", "Dog", "Pet", "PetHandler", "PetService", "PetState"]


class Dog(Variant, frozen=True):
    """``Pet::Dog``."""

    name: str
    age: u8
    breed: str


class Cat(Variant, frozen=True):
    """``Pet::Cat``."""

    name: str
    age: u8
    breed: str


Pet = Dog | Cat


class PetState(msgspec.Struct):
    """The connection state: the pet this connection is, if any."""

    pet: Pet | None = None


class PetService(Service):
    """The RPC methods (Rust trait ``PetService``)."""

    State = PetState

    async def become_dog(self, name: str, age: u8, breed: str) -> None:
        """Become a dog."""
        raise NotImplementedError

    async def become_cat(self, name: str, age: u8, breed: str) -> None:
        """Become a cat."""
        raise NotImplementedError

    async def make_a_noise(self) -> str | None:
        """What the pet says (None without a pet)."""
        raise NotImplementedError


class PetHandler(PetService, Handler):
    """The reference's handler."""

    state: PetState

    async def become_dog(self, name: str, age: u8, breed: str) -> None:
        self.state.pet = Dog(name=name, age=age, breed=breed)

    async def become_cat(self, name: str, age: u8, breed: str) -> None:
        self.state.pet = Cat(name=name, age=age, breed=breed)

    async def make_a_noise(self) -> str | None:
        pet = self.state.pet
        if isinstance(pet, Dog):
            return f"{pet.name} says woof!"
        if isinstance(pet, Cat):
            return f"{pet.name} says meow!"
        return None
