"""Calls coalesced per round of the event loop: one round trip for what several requests ask.

A server under load runs several requests' callbacks in each round of its event loop, and
many of them ask a remote store the same kind of question (a rate-limit script, a client's
row). Each question alone costs a round trip and the client library's work around it (some
50–100 µs of CPU with redis-py or asyncpg); asked together, they cost one. :class:`Batches`
collects the calls made during one round and hands them to a handler at the start of the
next, which answers them all at once. A lone call goes alone, one round later.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Batches"]

Q = TypeVar("Q")
A = TypeVar("A")

#: Answers every question of a batch, in order: an answer, or the exception for that question.
Handler = Callable[[Sequence[Q]], Awaitable[Sequence[A | BaseException]]]


class Batches(Generic[Q, A]):
    """``await batches.ask(question)``: the answer the handler gives it, with the questions
    asked in the same round of the event loop.

    The handler must give one answer or exception per question, in order; if it raises
    instead, every question of the batch gets that exception: each caller a copy of its own,
    caused by it (one instance raised in several tasks would collect all their tracebacks,
    and keep their frames alive). A caller that gives up
    (cancelled) does not disturb its batch. The handler runs in a task of its own, kept
    until it ends.
    """

    def __init__(self, handler: Handler[Q, A]) -> None:
        self._handler = handler
        self._queue: list[tuple[Q, asyncio.Future[A]]] = []
        self._running: set[asyncio.Task[None]] = set()  # held: the loop keeps weak references

    async def ask(self, question: Q) -> A:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[A] = loop.create_future()
        self._queue.append((question, waiter))
        if len(self._queue) == 1:
            task = loop.create_task(self._answer())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return await waiter

    async def _answer(self) -> None:
        batch, self._queue = self._queue, []
        try:
            answers = await self._handler([question for question, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers to {len(batch)} questions")
        except Exception as exc:
            answers = [_own(exc) for _ in batch]
        except BaseException:  # cancelled (the loop is closing): so are the callers
            for _, waiter in batch:
                waiter.cancel()
            raise
        for (_, waiter), answer in zip(batch, answers, strict=True):
            if waiter.done():  # its caller gave up
                continue
            if isinstance(answer, BaseException):
                waiter.set_exception(answer)
            else:
                waiter.set_result(answer)


def _own(exc: Exception) -> Exception:
    """A copy of ``exc`` (same type and arguments) for one caller, caused by ``exc``; ``exc``
    itself if it cannot be copied."""
    try:
        mine = copy.copy(exc)
    except Exception:  # an exception type that cannot be rebuilt from its arguments
        return exc
    mine.__cause__ = exc
    return mine
