"""What a fake model API billed: the usage it reported for each model call it answered.

A test that checks an agent's token totals must know what the API charged per request, not
what the CLI says about it (which may be a running total). Each fake records one
:class:`Bill` when it sends a response's final usage; the test sums them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Bill:
    """The usage one model response reported."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0


class Ledger:
    """The bills of one fake, in the order they were sent (thread-safe: the fake's handlers
    run on their own threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bills: list[Bill] = []

    def record(self, bill: Bill) -> Bill:
        """Add ``bill``; returns it, so a response builder can record as it reports."""
        with self._lock:
            self._bills.append(bill)
        return bill

    def bills(self) -> list[Bill]:
        """A snapshot of every bill so far, oldest first."""
        with self._lock:
            return list(self._bills)

    def total(self) -> Bill:
        """The sum of every bill so far."""
        bills = self.bills()
        return Bill(
            input_tokens=sum(b.input_tokens for b in bills),
            output_tokens=sum(b.output_tokens for b in bills),
            cached_tokens=sum(b.cached_tokens for b in bills),
        )
