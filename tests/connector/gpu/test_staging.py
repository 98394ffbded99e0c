"""Model staging: hydrate for the block, stage back after it, with nothing copied back."""

from __future__ import annotations

import pytest

from connector.gpu import move_module, staged
from tests.fakes import FakeMemory


def test_staged_moves_there_and_back_and_frees_even_on_error() -> None:
    moves: list[str] = []
    memory = FakeMemory()
    with pytest.raises(RuntimeError), staged(moves.append, "cuda:1", memory):
        assert moves == ["cuda:1"]
        raise RuntimeError("batch failed")
    assert moves == ["cuda:1", "cpu"] and memory.frees == 1


def test_a_failed_hydration_still_stages_back() -> None:
    moves: list[str] = []

    def move(device: str) -> None:
        moves.append(device)
        if device != "cpu":
            raise MemoryError("no room")

    memory = FakeMemory()
    with pytest.raises(MemoryError), staged(move, "cuda:0", memory):
        pass
    assert moves == ["cuda:0", "cpu"] and memory.frees == 1


def test_a_module_that_never_left_moves_plainly() -> None:
    import torch

    module = torch.nn.Linear(2, 2)
    move_module(module, "cpu")
    assert next(module.parameters()).device.type == "cpu"
