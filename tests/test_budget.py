"""The memory budget's pure parts: :class:`Holding` (bytes held in several budgets)."""

from __future__ import annotations

from trio_ws_demo.budget import Holding, MemoryBudget


def test_a_holding_takes_from_every_budget_or_none() -> None:
    small, large = MemoryBudget(10), MemoryBudget(100)
    held = Holding(large, small)
    assert held.take(8)
    assert (large.used, small.used, held.held) == (8, 8, 8)
    assert not held.take(5)  # the small one refuses: the large one gives it back
    assert (large.used, small.used, held.held) == (8, 8, 8)
    held.force(5)  # already here: counted past the limit
    assert (large.used, small.used, held.held) == (13, 13, 13)
    held.release()
    assert (large.used, small.used, held.held) == (0, 0, 0)


def test_holdings_share_their_budget() -> None:
    shared = MemoryBudget(10)
    first, second = Holding(shared), Holding(shared)
    assert first.take(7)
    assert not second.take(4)
    first.release()
    assert second.take(4)
    assert shared.used == 4
