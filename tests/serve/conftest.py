"""The server's fixtures (the helpers are in serve_helpers.py)."""

from collections.abc import Iterator

import pytest
import torch
from serve_helpers import Served, serving, tiny_pool


@pytest.fixture(scope="package", autouse=True)
def one_thread() -> Iterator[None]:
    """The server's engine thread and the tests' own decoding share two busy cores: one thread each runs
    the tiny experts ~100x faster than oversubscribed threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """The module's server: four rows at most, so that six concurrent requests queue."""
    with serving(tiny_pool(), max_batch=4, max_queue=8) as running:
        yield running
