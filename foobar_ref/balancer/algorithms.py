"""Which backend takes the next request: smooth weighted round-robin or weighted least connections. Pure.

Theory of operation
-------------------
Both get the candidates already filtered by the farm (usable, below their
`maxconn`, not yet tried for this request) with their effective weights, and
return one name.  Weights change at run time (the admin socket, slow start), so
neither precomputes a schedule.

`SmoothRoundRobin` is the smooth weighted round-robin of nginx (and, in
effect, HAProxy's dynamic `roundrobin`): every pick adds each candidate's
weight to its running `current`, takes the largest, and takes the total off
the winner.  Weights 3:1 give a a b a, a a b a, ...: exactly 3:1 over every 4
picks and never a long run of one backend.  Equal weights give plain
round-robin in topology order.

`LeastConn` is HAProxy's `leastconn`: the candidate with the fewest requests
in flight per unit of weight, `(served + 1) / weight`; ties go round-robin
(the next one after the last winner in topology order), so an idle farm still
spreads its requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Candidate(Protocol):
    name: str
    served: int


class Algorithm(Protocol):
    def pick(self, candidates: Sequence[tuple[Candidate, int]]) -> str | None:
        """The chosen name among (candidate, effective weight > 0), in topology order; None if empty."""
        ...

    def forget(self, name: str) -> None:
        """The backend left the rotation (down, drained): its running credit starts over."""
        ...


class SmoothRoundRobin:
    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def pick(self, candidates: Sequence[tuple[Candidate, int]]) -> str | None:
        best: str | None = None
        best_current = 0
        total = 0
        current = self._current
        for candidate, weight in candidates:
            name = candidate.name
            value = current.get(name, 0) + weight
            current[name] = value
            total += weight
            if best is None or value > best_current:
                best, best_current = name, value
        if best is not None:
            current[best] = best_current - total
        return best

    def forget(self, name: str) -> None:
        self._current.pop(name, None)


class LeastConn:
    def __init__(self, order: Sequence[str]) -> None:
        self._rank = {name: i for i, name in enumerate(order)}
        self._last = -1

    def pick(self, candidates: Sequence[tuple[Candidate, int]]) -> str | None:
        if not candidates:
            return None
        size = len(self._rank)

        def key(item: tuple[Candidate, int]) -> tuple[float, int]:
            candidate, weight = item
            after_last = (self._rank[candidate.name] - self._last - 1) % size
            return (candidate.served + 1) / weight, after_last

        chosen = min(candidates, key=key)[0].name
        self._last = self._rank[chosen]
        return chosen

    def forget(self, name: str) -> None:
        pass


def make(name: str, order: Sequence[str]) -> Algorithm:
    if name == "leastconn":
        return LeastConn(order)
    return SmoothRoundRobin()
