"""The contract every ``Repository`` adapter (state-stored aggregates and sagas) passes.

Subclass ``RepositoryContract`` in a ``test_*.py`` module and override the ``repository``
fixture to return a fresh, empty repository that accepts the aggregate classes of
``AGGREGATE_TYPES`` (plain dataclasses, so a serializing repository can store them).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated

import pytest

from ecopy import ConcurrencyError, Identifier, Repository
from ecopy.messaging.collector import unit_of_work


class Rollback(Exception):
    """Fails a unit of work in the contract tests."""


@dataclass
class Basket:
    basket_id: Annotated[str, Identifier]
    items: list[str] = field(default_factory=list)
    total: int = 0


@dataclass
class Shipment:
    tenant: Annotated[str, Identifier]
    shipment_id: Annotated[str, Identifier]
    address: dict[str, str] = field(default_factory=dict)


AGGREGATE_TYPES = (Basket, Shipment)


def basket_key(basket_id: str = "b-1") -> dict[str, str]:
    return {"basket_id": basket_id}


class RepositoryContract:
    @pytest.fixture
    def repository(self) -> Repository:
        raise NotImplementedError("override the repository fixture with a fresh Repository")

    @pytest.fixture
    def unit_of_work(self):
        """A unit of work of the store's kind: in memory by default; a database transaction
        for a database store (override)."""
        return unit_of_work

    def test_it_implements_the_repository_port_and_handles_the_contract_types(self, repository):
        assert isinstance(repository, Repository)
        assert all(repository.can_handle(cls) for cls in AGGREGATE_TYPES)

    def test_finding_an_aggregate_that_was_never_saved_returns_none(self, repository):
        assert repository.find(Basket, basket_key("missing")) is None

    def test_saving_a_new_aggregate_with_expected_version_zero_makes_version_one(self, repository):
        assert repository.save(Basket, basket_key(), Basket("b-1", ["apple"], 3), 0) == 1

    def test_find_returns_the_saved_state_and_its_version(self, repository):
        repository.save(Basket, basket_key(), Basket("b-1", ["apple"], 3), 0)

        loaded = repository.find(Basket, basket_key())

        assert loaded is not None
        assert loaded.aggregate == Basket("b-1", ["apple"], 3)
        assert type(loaded.aggregate) is Basket
        assert loaded.version == 1

    def test_each_save_based_on_the_current_version_increments_it(self, repository):
        repository.save(Basket, basket_key(), Basket("b-1"), 0)
        assert repository.save(Basket, basket_key(), Basket("b-1", ["pear"], 1), 1) == 2
        assert repository.save(Basket, basket_key(), Basket("b-1", ["pear", "fig"], 2), 2) == 3

        loaded = repository.find(Basket, basket_key())
        assert loaded is not None
        assert (loaded.aggregate, loaded.version) == (Basket("b-1", ["pear", "fig"], 2), 3)

    def test_a_stale_save_raises_and_leaves_the_stored_state_unchanged(self, repository):
        repository.save(Basket, basket_key(), Basket("b-1", ["apple"], 1), 0)
        repository.save(Basket, basket_key(), Basket("b-1", ["apple", "pear"], 2), 1)

        with pytest.raises(ConcurrencyError):
            repository.save(Basket, basket_key(), Basket("b-1", ["stale"], 99), 1)
        with pytest.raises(ConcurrencyError):
            repository.save(Basket, basket_key(), Basket("b-1", ["again"], 99), 0)
        with pytest.raises(ConcurrencyError):
            repository.save(Basket, basket_key(), Basket("b-1", ["ahead"], 99), 7)

        loaded = repository.find(Basket, basket_key())
        assert loaded is not None
        assert (loaded.aggregate, loaded.version) == (Basket("b-1", ["apple", "pear"], 2), 2)

    def test_saving_an_unknown_aggregate_with_a_nonzero_version_fails(self, repository):
        with pytest.raises(ConcurrencyError):
            repository.save(Basket, basket_key(), Basket("b-1"), 3)

        assert repository.find(Basket, basket_key()) is None

    def test_aggregates_are_kept_apart_by_identifier_and_by_class(self, repository):
        repository.save(Basket, basket_key("b-1"), Basket("b-1", ["one"]), 0)
        repository.save(Basket, basket_key("b-2"), Basket("b-2", ["two"]), 0)
        repository.save(Basket, basket_key("b-2"), Basket("b-2", ["two", "more"]), 1)
        shipment = {"tenant": "acme", "shipment_id": "b-1"}
        repository.save(Shipment, shipment, Shipment("acme", "b-1", {"city": "Oslo"}), 0)

        one = repository.find(Basket, basket_key("b-1"))
        two = repository.find(Basket, basket_key("b-2"))
        ship = repository.find(Shipment, shipment)
        assert one is not None and two is not None and ship is not None
        assert (one.aggregate.items, one.version) == (["one"], 1)
        assert (two.aggregate.items, two.version) == (["two", "more"], 2)
        assert (ship.aggregate, ship.version) == (Shipment("acme", "b-1", {"city": "Oslo"}), 1)

    def test_composite_identifiers_are_matched_on_every_part(self, repository):
        repository.save(
            Shipment, {"tenant": "acme", "shipment_id": "s-1"}, Shipment("acme", "s-1"), 0
        )

        assert repository.find(Shipment, {"tenant": "other", "shipment_id": "s-1"}) is None
        assert repository.find(Shipment, {"tenant": "acme", "shipment_id": "s-2"}) is None
        assert repository.find(Shipment, {"tenant": "acme", "shipment_id": "s-1"}) is not None

    def test_changing_a_saved_object_afterwards_does_not_change_the_store(self, repository):
        basket = Basket("b-1", ["apple"], 1)
        repository.save(Basket, basket_key(), basket, 0)

        basket.items.append("sneaked in")
        basket.total = 1000

        loaded = repository.find(Basket, basket_key())
        assert loaded is not None
        assert loaded.aggregate == Basket("b-1", ["apple"], 1)

    def test_changing_a_loaded_object_without_saving_does_not_change_the_store(self, repository):
        repository.save(Basket, basket_key(), Basket("b-1", ["apple"], 1), 0)
        loaded = repository.find(Basket, basket_key())
        assert loaded is not None

        loaded.aggregate.items.append("unsaved")
        loaded.aggregate.total = 1000

        again = repository.find(Basket, basket_key())
        assert again is not None
        assert again.aggregate == Basket("b-1", ["apple"], 1)
        assert again.aggregate is not loaded.aggregate

    def test_concurrent_saves_of_the_same_version_let_exactly_one_win(self, repository):
        repository.save(Basket, basket_key(), Basket("b-1"), 0)
        writers = 8
        start = threading.Barrier(writers)
        wins: list[int] = []
        conflicts: list[int] = []

        def write(n: int) -> None:
            start.wait()
            try:
                repository.save(Basket, basket_key(), Basket("b-1", [f"writer {n}"], n), 1)
                wins.append(n)
            except ConcurrencyError:
                conflicts.append(n)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert len(wins) == 1
        assert len(conflicts) == writers - 1
        loaded = repository.find(Basket, basket_key())
        assert loaded is not None
        assert (loaded.aggregate, loaded.version) == (
            Basket("b-1", [f"writer {wins[0]}"], wins[0]),
            2,
        )

    def test_concurrent_creations_of_the_same_aggregate_let_exactly_one_win(self, repository):
        writers = 6
        start = threading.Barrier(writers)
        wins: list[int] = []
        conflicts: list[int] = []

        def write(n: int) -> None:
            start.wait()
            try:
                repository.save(Basket, basket_key("new"), Basket("new", [], n), 0)
                wins.append(n)
            except ConcurrencyError:
                conflicts.append(n)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert (len(wins), len(conflicts)) == (1, writers - 1)
        loaded = repository.find(Basket, basket_key("new"))
        assert loaded is not None
        assert (loaded.aggregate.total, loaded.version) == (wins[0], 1)

    # -- units of work ----------------------------------------------------------------

    def test_a_save_in_a_unit_of_work_that_fails_is_undone(self, repository, unit_of_work):
        repository.save(Basket, basket_key(), Basket("b-1", ["pen"]), 0)
        with pytest.raises(Rollback), unit_of_work():
            repository.save(Basket, basket_key(), Basket("b-1", ["pen", "ink"]), 1)
            repository.save(Basket, basket_key("b-2"), Basket("b-2"), 0)
            raise Rollback

        found = repository.find(Basket, basket_key())
        assert (found.aggregate.items, found.version) == (["pen"], 1)
        assert repository.find(Basket, basket_key("b-2")) is None
