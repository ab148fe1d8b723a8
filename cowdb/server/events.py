"""The stream of new commits: one watcher per server notices every new version
(its own commits at once, other processes' within ``poll`` seconds) and hands each,
in version order, to every subscriber's queue."""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from cowdb.errors import VersionNotFound

from .http import CommitJSON, commit_json, run

if TYPE_CHECKING:
    from cowdb.db import Database

log: logging.Logger = logging.getLogger("cowdb.server")
QUEUE = 10000   # a follower this far behind is dropped; it reconnects with Last-Event-ID


def sse(c: CommitJSON) -> str:
    return f"id: {c['version']}\nevent: commit\ndata: {json.dumps(c)}\n\n"


class Broker:
    db: Database
    poll: float
    last: int
    def __init__(self, db: Database, poll: float = 0.5) -> None:
        self.db, self.poll = db, poll
        self.last = db.version
        self.subscribers: set[asyncio.Queue[CommitJSON]] = set()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._loop = loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except BaseException:
                pass
            self._task = None

    def notify(self) -> None:
        """A commit was made here: look now (callable from any thread)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def commits_between(self, lo: int, hi: int) -> list[CommitJSON]:
        """Commits lo < version <= hi that still exist, oldest first (blocking)."""
        out = []
        for v in range(lo + 1, hi + 1):
            try:
                out.append(commit_json(self.db.commit_info(v)))
            except VersionNotFound:
                pass   # reclaimed by gc
        return out

    async def _watch(self) -> None:
        me, wake = asyncio.current_task(), self._wake
        assert me is not None and wake is not None  # a task started by start()
        # (Python 3.11's wait_for can swallow a cancel that races a wake-up: the task's
        # pending cancel count still shows it, so the loop ends and the server can stop)
        while not me.cancelling():
            try:
                await asyncio.wait_for(wake.wait(), self.poll)
            except TimeoutError:
                pass
            wake.clear()
            try:
                cur = await run(lambda: self.db.version)
                if cur > self.last:
                    new = await run(self.commits_between, self.last, cur)
                    self.last = cur
                    for c in new:
                        for q in list(self.subscribers):
                            try:
                                q.put_nowait(c)
                            except asyncio.QueueFull:
                                self.subscribers.discard(q)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the commit watcher failed; retrying")
                await asyncio.sleep(self.poll)

    async def follow(self, since: int | None,
                     is_disconnected: Callable[[], Awaitable[bool]]) -> AsyncIterator[str]:
        """Yield SSE text: commits after ``since`` (None: only new ones), then live."""
        q: asyncio.Queue[CommitJSON] = asyncio.Queue(QUEUE)
        self.subscribers.add(q)
        try:
            sent = self.last if since is None else since
            yield f"retry: 1000\n: following from version {sent}\n\n"
            if sent < self.last:
                upto = self.last
                for c in await run(self.commits_between, sent, upto):
                    yield sse(c)
                sent = upto
            me = asyncio.current_task()
            assert me is not None  # (a request runs in a task)
            while not me.cancelling():
                try:
                    c = await asyncio.wait_for(q.get(), 15)
                except TimeoutError:
                    if await is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                if q not in self.subscribers and q.empty():
                    return   # dropped for falling behind: the client reconnects and replays
                if c["version"] > sent:
                    sent = c["version"]
                    yield sse(c)
        finally:
            self.subscribers.discard(q)
