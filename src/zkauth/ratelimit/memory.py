"""The in-process GCRA rate limiter: the embedded default (README.md "Production").

Its state lives in one process, so with several workers each enforces the limits separately
(``workers`` × the configured rate in total); deployments with several workers or hosts use
:class:`zkauth.ratelimit.RedisRateLimiter`.

Memory is bounded. A key's only state is its theoretical arrival time (TAT); once the TAT is
in the past the key is indistinguishable from a fresh one, so dropping it loses nothing. Such
keys are swept every ``sweep_interval`` seconds. Keys still in the future *do* carry state, and
evicting them would hand their owners a fresh quota: an attacker could flood random keys to
reset their own. So when ``max_keys`` live keys exist, hits on *new* keys are refused (fail
safe: a 429, never a free pass) until sweeping frees room; known keys keep working normally.
"""

from __future__ import annotations

from collections.abc import Sequence

from zkauth.ratelimit.ports import MICROS, Decision, Rule, gcra_decision, to_micros

#: The default key cap: 100 000 keys is about 15 MB, and at the default per-IP rule (100/s) a
#: key lives at most about a second after its last request.
DEFAULT_MAX_KEYS = 100_000


class MemoryRateLimiter:
    """GCRA over one ``dict`` of theoretical arrival times, in integer microseconds.

    Safe for any number of coroutines of one event loop: :meth:`hit` never suspends between
    reading and writing the state, nor :meth:`hit_all` between its hits, so both are atomic
    without a lock. Not thread-safe.
    """

    def __init__(
        self,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        sweep_interval: float = 10.0,
        full_sweep_gap: float = 1.0,
    ) -> None:
        """``sweep_interval``: seconds between routine sweeps of expired keys.
        ``full_sweep_gap``: when the cap is reached, sweep at most this often, so that a flood of
        new keys cannot make every request pay for an O(``max_keys``) sweep."""
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._max_keys = max_keys
        self._sweep_every = to_micros(sweep_interval)
        self._full_gap = to_micros(full_sweep_gap)
        self._tat: dict[str, int] = {}
        self._last_sweep: int | None = None
        #: The earliest TAT left after the last sweep: before it, a sweep cannot free anything.
        self._earliest: int = 0

    def __len__(self) -> int:
        """How many keys are held (for tests and metrics)."""
        return len(self._tat)

    async def hit(self, key: str, rule: Rule, now: float) -> Decision:
        now_us = to_micros(now)
        if self._last_sweep is None or now_us - self._last_sweep >= self._sweep_every:
            self._sweep(now_us)
        tat = self._tat.get(key)
        if tat is None and len(self._tat) >= self._max_keys:
            self._sweep_if_useful(now_us)
            if len(self._tat) >= self._max_keys:
                return self._refuse_full(rule, now_us)
        decision, new_tat = gcra_decision(rule, now_us if tat is None else tat, now_us)
        if new_tat is not None:
            self._tat[key] = new_tat
        return decision

    async def hit_all(self, checks: Sequence[tuple[str, Rule]], now: float) -> list[Decision]:
        decisions = []
        for key, rule in checks:
            decision = await self.hit(key, rule, now)
            decisions.append(decision)
            if not decision.allowed:
                break
        return decisions

    def _sweep(self, now_us: int) -> None:
        """Drop every key whose TAT has passed (O(keys)), and note when the next one will."""
        self._tat = {key: tat for key, tat in self._tat.items() if tat > now_us}
        self._last_sweep = now_us
        self._earliest = min(self._tat.values(), default=now_us)

    def _sweep_if_useful(self, now_us: int) -> None:
        assert self._last_sweep is not None
        if now_us >= self._earliest and now_us - self._last_sweep >= self._full_gap:
            self._sweep(now_us)

    def _refuse_full(self, rule: Rule, now_us: int) -> Decision:
        """The cap is reached: refuse, and tell the client when room may be made."""
        assert self._last_sweep is not None
        retry_at = max(self._earliest, self._last_sweep + self._full_gap, now_us + 1)
        wait = (retry_at - now_us) / MICROS
        return Decision(False, rule.limit, 0, wait, wait, rule)
