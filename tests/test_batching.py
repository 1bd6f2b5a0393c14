"""zkauth.batching: calls of one event-loop round answered together, each getting its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zkauth.batching import Batches


class Recorder:
    """A handler that doubles numbers, fails on negative ones, and remembers each batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def __call__(self, questions: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(questions))
        await asyncio.sleep(0)  # answered later than asked, as over a network
        return [ValueError(f"negative: {q}") if q < 0 else 2 * q for q in questions]


async def test_questions_of_one_round_share_a_batch_and_later_ones_get_the_next() -> None:
    handler = Recorder()
    batches = Batches(handler)
    assert await asyncio.gather(*(batches.ask(q) for q in range(5))) == [0, 2, 4, 6, 8]
    assert await batches.ask(7) == 14  # a lone question goes alone
    assert handler.batches == [[0, 1, 2, 3, 4], [7]]


async def test_an_exception_answers_only_its_own_question() -> None:
    batches = Batches(Recorder())
    answers = await asyncio.gather(
        batches.ask(1), batches.ask(-1), batches.ask(3), return_exceptions=True
    )
    assert answers[0] == 2 and answers[2] == 6
    assert isinstance(answers[1], ValueError) and str(answers[1]) == "negative: -1"


async def test_a_failing_handler_fails_every_question_of_its_batch_only() -> None:
    calls = 0

    async def flaky(questions: Sequence[int]) -> list[int | BaseException]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("gone")
        return list(questions)

    batches = Batches(flaky)
    answers = await asyncio.gather(batches.ask(1), batches.ask(2), return_exceptions=True)
    first, second = answers
    assert isinstance(first, ConnectionError) and isinstance(second, ConnectionError)
    assert str(first) == str(second) == "gone"
    # Each caller raises an instance of its own, caused by the handler's.
    assert first is not second
    assert isinstance(first.__cause__, ConnectionError) and first.__cause__ is second.__cause__
    assert await batches.ask(3) == 3


async def test_a_handler_that_miscounts_its_answers_fails_the_batch() -> None:
    async def short(questions: Sequence[int]) -> list[int | BaseException]:
        return list(questions[1:])

    batches = Batches(short)
    answers = await asyncio.gather(batches.ask(1), batches.ask(2), return_exceptions=True)
    assert all(isinstance(a, RuntimeError) and "1 answers to 2" in str(a) for a in answers)


async def test_a_caller_that_gives_up_leaves_the_others_their_answers() -> None:
    handler = Recorder()
    batches = Batches(handler)
    quitter = asyncio.ensure_future(batches.ask(1))
    stayer = asyncio.ensure_future(batches.ask(2))
    await asyncio.sleep(0)  # both asked, their batch on its way
    quitter.cancel()
    assert await stayer == 4
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert handler.batches == [[1, 2]]


async def test_cancelling_the_batch_cancels_its_callers() -> None:
    started = asyncio.Event()

    async def stuck(questions: Sequence[int]) -> list[int | BaseException]:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("never answered")

    batches = Batches(stuck)
    caller = asyncio.ensure_future(batches.ask(1))
    await started.wait()
    (running,) = batches._running
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller


@given(st.lists(st.integers(min_value=-5, max_value=1000), max_size=40))
def test_every_caller_gets_the_answer_to_its_own_question(questions: list[int]) -> None:
    async def main() -> list[int | BaseException]:
        batches = Batches(Recorder())
        return await asyncio.gather(*(batches.ask(q) for q in questions), return_exceptions=True)

    for question, answer in zip(questions, asyncio.run(main()), strict=True):
        if question < 0:
            assert isinstance(answer, ValueError) and str(answer) == f"negative: {question}"
        else:
            assert answer == 2 * question
