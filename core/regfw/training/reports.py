"""A search's report points for points trained in ``--jobs`` worker processes or as Ray tasks.

In this process a search's watch (``watch(epoch, history, recorder)``, see :func:`regfw.runner.execute`)
sees every epoch of its point and raises :class:`regfw.runner.Pruned` to stop it. A point trained
elsewhere gets an :class:`Asking` in its place: at each report point it takes the value there with the
watch's picklable ``points`` (``points.value(epoch, history, recorder)``, None between report points)
and asks this process, which holds the study, whether to go on. :class:`Judges` answers with the
watch's ``judge(epoch, value)`` (report to the study, ask the pruner). The workers never reach the
study's storage; each report point costs one round trip, and the worker waits for its verdict.

Two channels carry the questions, with one interface (``ask`` in the worker; ``take``, ``give`` here):
:class:`ProcessChannel` (a queue and a shared array, handed to ``--jobs`` workers as they start) and
:class:`RayChannel` (a small async Ray actor).
"""

from __future__ import annotations

import dataclasses
import queue
import time

from regfw.interrupts import held

POLL_SECONDS = (0.0002, 0.01)  # a worker waiting for its verdict looks this often (first, at most)


class Asking:
    """A worker's watch for one point: the value at each report point, the verdict asked for."""

    def __init__(self, slot: int, points, channel=None):
        self.slot, self.points = slot, points
        self.channel = channel  # None: the channel this worker process was started with

    def __call__(self, epoch: int, history, recorder) -> None:
        value = self.points.value(epoch, history, recorder)
        if value is None:
            return
        channel = self.channel if self.channel is not None else _installed
        if channel is None:
            raise RuntimeError("a report point outside a worker started with a channel")
        if channel.ask(self.slot, epoch, value):
            from regfw.runner import Pruned

            raise Pruned(epoch)


class Judges:
    """This process's side: the search's watches, each on a slot of the channel while its point is out,
    and the answers to what the workers ask. ``capacity``: the points out at once, at the most."""

    def __init__(self, watches: dict, channel, capacity: int = 0):
        self.channel, self.slot_of, self.by_slot = channel, {}, {}
        self.free = list(range(max(capacity, len(watches))))[::-1]
        for index in sorted(watches):
            self.add(index, watches[index])

    def add(self, index: int, watch) -> None:
        """A point handed out now (a search's refill) is watched too, on a free slot."""
        slot = self.free.pop()
        self.channel.reset(slot)
        self.slot_of[index], self.by_slot[slot] = slot, watch

    def release(self, index: int) -> None:
        """The point ended: its slot is free for a point handed out later."""
        slot = self.slot_of.pop(index, None)
        if slot is not None:
            del self.by_slot[slot]
            self.free.append(slot)

    def asking(self, index: int) -> Asking | None:
        slot = self.slot_of.get(index)
        return None if slot is None else Asking(slot, self.by_slot[slot].points, self.channel.for_worker())

    def for_task(self, task):
        """``task`` as a worker is handed it: a bucket (a task carrying its points' ``watches``) with
        an :class:`Asking` for each watched point."""
        watched = {t.index: self.asking(t.index) for t in task.tasks if t.index in self.slot_of}
        return dataclasses.replace(task, watches=watched)

    def answer(self, timeout: float) -> None:
        """Answer what workers asked, waiting up to ``timeout`` for the first question."""
        for slot, epoch, value in self.channel.take(timeout):
            watch, prune = self.by_slot.get(slot), False
            with held() as late:  # a report is written to the study whole
                try:
                    prune = watch is not None and bool(watch.judge(epoch, value))
                except Exception:  # noqa: BLE001 - the study's storage refused a report: train on
                    prune = False
            self.channel.give(slot, epoch, prune)
            late.deliver()


def _code(epoch: int, prune: bool = False) -> int:
    """A verdict as one number: the epoch it answers and whether to stop there."""
    return 2 * epoch + int(prune)


# -- --jobs: a queue of questions, a shared array of verdicts -------------------------------------------

_installed = None  # in a --jobs worker: the ProcessChannel it was started with


class ProcessChannel:
    def __init__(self, context, size: int):
        self.questions = context.Queue()
        self.verdicts = context.Array("q", max(1, size), lock=False)

    def for_worker(self):
        return None  # the worker's own copy, installed as it starts (see :func:`install`)

    def parts(self) -> tuple:
        """What a starting worker is handed (a queue and shared memory cross only at spawn)."""
        return self.questions, self.verdicts

    def ask(self, slot: int, epoch: int, value: float) -> bool:
        self.questions.put((slot, epoch, float(value)))
        wait, want = POLL_SECONDS[0], _code(epoch)
        while self.verdicts[slot] < want:  # one writer (this process's parent): no lock needed
            time.sleep(wait)
            wait = min(wait * 2, POLL_SECONDS[1])
        return bool(self.verdicts[slot] & 1)

    def take(self, timeout: float) -> list:
        asked = []
        try:
            asked.append(self.questions.get(timeout=timeout))
            while True:
                asked.append(self.questions.get_nowait())
        except queue.Empty:
            pass
        return asked

    def give(self, slot: int, epoch: int, prune: bool) -> None:
        self.verdicts[slot] = _code(epoch, prune)

    def reset(self, slot: int) -> None:
        self.verdicts[slot] = 0  # its last point has ended: no worker reads it until the next starts


def install(parts) -> None:
    """In a starting ``--jobs`` worker: the channel its points' :class:`Asking` watches use."""
    global _installed
    if parts is not None:
        channel = ProcessChannel.__new__(ProcessChannel)
        channel.questions, channel.verdicts = parts
        _installed = channel


# -- Ray: an async actor holds the questions and the verdicts ------------------------------------------

class _Verdicts:
    """The Ray actor (``ray.remote`` applies to it in :func:`ray_channel`): a worker's ``ask`` waits
    on it until this process has given that report point's verdict."""

    def __init__(self):
        import asyncio

        self.questions, self.verdicts = [], {}
        self.asked, self.decided = asyncio.Event(), asyncio.Condition()

    async def ask(self, slot: int, epoch: int, value: float) -> bool:
        want = _code(epoch)
        if self.verdicts.get(slot, 0) < want:  # a retried attempt asks again for what was answered
            self.questions.append((slot, epoch, value))
            self.asked.set()
            async with self.decided:
                await self.decided.wait_for(lambda: self.verdicts.get(slot, 0) >= want)
        return bool(self.verdicts[slot] & 1) and self.verdicts[slot] // 2 == epoch

    async def take(self, timeout: float) -> list:
        import asyncio

        if not self.questions:
            try:
                await asyncio.wait_for(self.asked.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        asked, self.questions = self.questions, []
        self.asked.clear()
        return asked

    async def give(self, slot: int, epoch: int, prune: bool) -> None:
        async with self.decided:
            self.verdicts[slot] = max(self.verdicts.get(slot, 0), _code(epoch, prune))
            self.decided.notify_all()

    async def reset(self, slot: int) -> None:
        self.verdicts.pop(slot, None)


class RayChannel:
    def __init__(self, actor):
        self.actor = actor

    def for_worker(self):
        return self  # an actor handle travels with the task

    def ask(self, slot: int, epoch: int, value: float) -> bool:
        import ray

        return ray.get(self.actor.ask.remote(slot, epoch, float(value)))

    def take(self, timeout: float) -> list:
        import ray

        return ray.get(self.actor.take.remote(timeout))

    def give(self, slot: int, epoch: int, prune: bool) -> None:
        self.actor.give.remote(slot, epoch, prune)  # not waited for: the worker waits on it

    def reset(self, slot: int) -> None:
        import ray

        ray.get(self.actor.reset.remote(slot))  # before the slot's next point can ask

    def close(self) -> None:
        import ray

        try:
            ray.kill(self.actor)
        except Exception:  # noqa: BLE001 - Ray is already gone
            pass


def ray_channel() -> RayChannel:
    """The actor, on the cluster ``ray.init`` reached; it asks for no CPU of its own."""
    import ray

    return RayChannel(ray.remote(num_cpus=0, max_restarts=0)(_Verdicts).remote())
