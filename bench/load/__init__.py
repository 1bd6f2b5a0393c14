"""The load generator of ``make bench``: a separate process that drives one server on 127.0.0.1.

The parent (``python -m bench``) starts a server, then :func:`bench.load.driver.run_load` runs
``python -m bench.load --plan P --out O`` and reads the :class:`~bench.load.results.LoadReport`
it writes. The generator only talks to ``127.0.0.1``, and every phase is bounded in count (its
precomputed supply) and in time (its duration, and :attr:`~bench.load.plan.Plan.max_seconds`
for the whole run).

Modules, in the order a run uses them:

* :mod:`~bench.load.plan`: the flows and the :class:`~bench.load.plan.Plan` (what to run).
* :mod:`~bench.load.driver`: the parent's side: start the generator process, relay its progress.
* :mod:`~bench.load.generator`: the generator process: every flow, closed then open loop.
* :mod:`~bench.load.session`: connections, the precompute pool and the enrolled clients.
* :mod:`~bench.load.flows`: what one flow sends, and what it expects back.
* :mod:`~bench.load.loops`: the timed phases, closed loop and open loop.
* :mod:`~bench.load.meter`: CPU and memory of the server (and of everything else) from ``/proc``.
* :mod:`~bench.load.http1`: the minimal keep-alive HTTP/1.1 client the timed phases use.
* :mod:`~bench.load.results`: what a run measured (JSON in and out).

**The client's own work is kept out of the way.** The generator shares the machine's cores with
the server, so everything that can be computed before a timed phase is (enrollment bodies with
their proofs of possession, challenges and their proofs, tokens, request bytes), in a pool of
worker processes, while the server is idle. Timed phases then cost the generator one request
write and one response parse per request: it speaks HTTP/1.1 keep-alive itself on asyncio
protocols (uvloop when installed), about 10 µs per request, instead of an HTTP library's ~100 µs.

**Closed loop** (peak throughput): ``c`` connections, each sending its next flow as soon as the
previous one is answered, for :attr:`~bench.load.plan.Plan.closed_seconds` after a warm-up. The
rate counts the flows that completed *without error* inside that window.

**Open loop** (latency at a fixed offered rate): flow ``i`` is due at ``t0 + i / rate`` and is
started then whatever the earlier ones are doing, on a pool of keep-alive connections (a flow
waits for a free connection when all are busy). Latency runs from the *scheduled* time, not the
actual send, so waiting behind a slow server counts (no coordinated omission).

**Errors** (an unexpected status, a closed connection, a timeout) are counted per phase with
what went wrong; they never count as completed flows, and a flow with any is never a PASS.
"""
