"""Turning one currency into another on a local date, as CONTRACT §4 fixes it.

The newest rate dated on or before the day, for the pair in either direction (C→R
multiplies, R→C divides; on the same date C→R wins). When the pair has none, a
common base B is used, each leg (B→R, B→C) found the same way; of several bases, the
one with the newest legs. No rate at all is
``None``: the caller reports it and leaves the value null, never zero.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from shared.lru import Lru

# Date ranges whose factors a book remembers (the ranges of a tenant's dashboards), and
# at most how many characters of factors in all: about 25 a day, so three years of one
# currency are some 27,000, and a book never holds more than a megabyte of them.
REMEMBERED_RANGES = 32
REMEMBERED_CHARACTERS = 1_000_000


@dataclass(frozen=True)
class RangeFactors:
    """One currency's factor to another on every day of a range, as a query takes them
    in: comma-separated in day order, an empty one where there is no rate."""

    text: str
    # The days without a rate, counted from the range's first (0).
    missing: tuple[int, ...]


def _characters(factors: RangeFactors) -> int:
    return len(factors.text)


@dataclass
class RateBook:
    # (base, quote) → dates ascending and the rate of each date
    _dates: dict[tuple[str, str], list[date]] = field(default_factory=lambda: defaultdict(list))
    _rates: dict[tuple[str, str], list[Decimal]] = field(default_factory=lambda: defaultdict(list))
    currencies: set[str] = field(default_factory=set)
    # currency → the currencies it has a pair with: the only bases that can serve it
    _partners: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _ranges: Lru[tuple[str, str, date, date], RangeFactors] = field(
        default_factory=lambda: Lru(
            REMEMBERED_RANGES, weigh=_characters, max_weight=REMEMBERED_CHARACTERS
        )
    )

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[date, str, str, Decimal]]) -> RateBook:
        """Rows of (date, base, quote, rate), in any order; later rows win a tie."""
        latest: dict[tuple[str, str, date], Decimal] = {}
        for day, base, quote, rate in rows:
            latest[(base, quote, day)] = rate
        book = cls()
        for (base, quote, day), rate in sorted(latest.items(), key=lambda item: item[0][2]):
            book._dates[(base, quote)].append(day)
            book._rates[(base, quote)].append(rate)
            book.currencies |= {base, quote}
            book._partners[base].add(quote)
            book._partners[quote].add(base)
        return book

    def _newest(self, pair: tuple[str, str], day: date) -> tuple[date, Decimal] | None:
        dates = self._dates.get(pair)
        if not dates:
            return None
        position = bisect.bisect_right(dates, day)
        if position == 0:
            return None
        return dates[position - 1], self._rates[pair][position - 1]

    def _dated(self, currency: str, target: str, day: date) -> tuple[date, Decimal] | None:
        """The factor from ``currency`` to ``target`` from the pair's own rates, with the
        date of the rate it comes from."""
        forward = self._newest((currency, target), day)
        backward = self._newest((target, currency), day)
        if forward is not None and (backward is None or forward[0] >= backward[0]):
            return forward
        if backward is not None:
            return backward[0], 1 / backward[1]
        return None

    def direct(self, currency: str, target: str, day: date) -> Decimal | None:
        """The factor from ``currency`` to ``target`` from the pair's own rates."""
        dated = self._dated(currency, target, day)
        return None if dated is None else dated[1]

    def factor(self, currency: str, target: str, day: date) -> Decimal | None:
        """How many ``target`` one ``currency`` is worth on ``day``; None when unknown.

        Through a base, the one whose older leg is the newest: rates of that very day
        beat a year-old pair. Of bases as fresh, the first in alphabetical order."""
        if currency == target:
            return Decimal(1)
        direct = self.direct(currency, target, day)
        if direct is not None:
            return direct
        best: tuple[date, Decimal] | None = None
        bases = self._partners.get(currency, set()) & self._partners.get(target, set())
        for base in sorted(bases - {currency, target}):
            to_target = self._dated(base, target, day)
            to_currency = self._dated(base, currency, day)
            if to_target is None or to_currency is None:
                continue
            fresh = min(to_target[0], to_currency[0])
            if best is None or fresh > best[0]:
                best = fresh, to_target[1] / to_currency[1]
        return None if best is None else best[1]

    def factors(self, currency: str, target: str, start: date, end: date) -> RangeFactors:
        """``factor`` of every day from ``start`` to ``end``, remembered: a book lives
        while the tenant's data is unchanged, its dashboards ask of the same ranges, and
        three years of one currency take about 2 ms to work out day by day."""
        key = (currency, target, start, end)
        found = self._ranges.get(key)
        if found is None:
            # A factor changes only on a day a rate of a pair of either currency is dated
            # (every leg through a base is such a pair): worked out on those days alone,
            # twenty years of thirty currencies' daily rates are not 7,000 x 30 lookups.
            changes = {
                day
                for pair, dates in self._dates.items()
                if currency in pair or target in pair
                for day in dates[
                    bisect.bisect_right(dates, start) : bisect.bisect_right(dates, end)
                ]
            }
            factor = self.factor(currency, target, start)
            factors = [factor]
            for n in range(1, (end - start).days + 1):
                day = start + timedelta(days=n)
                if day in changes:
                    factor = self.factor(currency, target, day)
                factors.append(factor)
            found = RangeFactors(
                text=",".join("" if factor is None else str(factor) for factor in factors),
                missing=tuple(n for n, factor in enumerate(factors) if factor is None),
            )
            self._ranges.put(key, found)
        return found
