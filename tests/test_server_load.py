"""Load on a real `cowdb serve` process, loopback only: 32 clients each make 100
read-modify-write increments of one counter with If-Match, retrying on 412; the
counter ends at 3,200 and the log holds 3,200 commits. Meanwhile 8 clients follow
the event stream and each sees every new version, in order. Bounded in count, and
by a generous overall timeout (a hang fails; nothing asserts speed)."""
import asyncio
import json
import random

import pytest

from server_util import ServeProcess

import httpx  # noqa: E402

import cowdb

CLIENTS, INCREMENTS, FOLLOWERS = 32, 100, 8
TOTAL = CLIENTS * INCREMENTS


async def incrementer(url: str, stats: dict) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        done = misses = 0
        while done < INCREMENTS:
            r = await c.get("/api/v1/keys/counter")
            n = int(r.json()["value"]) if r.status_code == 200 else 0
            w = await c.put("/api/v1/keys/counter", json={"value": str(n + 1)},
                            headers={"If-Match": r.headers["etag"]})
            if w.status_code == 412:
                stats["retries"] += 1
                misses += 1   # back off (random, exponential), then read again
                await asyncio.sleep(random.random() * min(0.2, 0.004 * 2 ** misses))
                continue
            assert w.status_code == 200, w.text
            done += 1
            misses = 0


async def follower(url: str, since: int, until: int, seen: list) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(60, read=120)) as c:
        async with c.stream("GET", "/api/v1/events", params={"since": since}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            event = {}
            async for line in r.aiter_lines():
                if line.startswith("id: "):
                    event["id"] = int(line[4:])
                elif line.startswith("data: "):
                    event["data"] = json.loads(line[6:])
                elif line == "" and "data" in event:
                    assert event["id"] == event["data"]["version"]
                    seen.append(event["data"]["version"])
                    event = {}
                    if seen[-1] >= until:
                        return


def test_32_clients_100_increments_each_and_8_followers(tmp_path):
    path = str(tmp_path / "load.cow")
    cowdb.open(path).close()
    with ServeProcess(path) as srv:
        start = 0
        stats = {"retries": 0}
        seen = [[] for _ in range(FOLLOWERS)]

        async def main():
            follow = [asyncio.create_task(follower(srv.url, start, start + TOTAL, s))
                      for s in seen]
            await asyncio.sleep(0.5)   # the followers are connected before the writes
            await asyncio.gather(*(incrementer(srv.url, stats) for _ in range(CLIENTS)))
            await asyncio.wait_for(asyncio.gather(*follow), 120)
        asyncio.run(asyncio.wait_for(main(), 1200))
        with httpx.Client(base_url=srv.url) as c:
            assert c.get("/api/v1/keys/counter").json()["value"] == str(TOTAL)
    with cowdb.open(path, readonly=True) as db:
        assert db.read()[b"counter"] == str(TOTAL).encode()
        commits = [c for c in db.log() if c.version > start]
        assert len(commits) == TOTAL
        assert {c.message for c in commits} == {"put counter"}
    for s in seen:
        assert s == list(range(start + 1, start + TOTAL + 1))
    print(f"\n{TOTAL} increments, {stats['retries']} retries after 412")


@pytest.mark.parametrize("since", [0, 3])
def test_a_follower_replays_from_last_event_id(tmp_path, since):
    path = str(tmp_path / "replay.cow")
    with cowdb.open(path) as db:
        for i in range(6):
            with db.write(f"c{i}") as tx:
                tx[b"k"] = b"%d" % i
    with ServeProcess(path) as srv:
        seen = []
        asyncio.run(asyncio.wait_for(follower(srv.url, since, 6, seen), 60))
        assert seen == list(range(since + 1, 7))
