"""Run a write in one thread and a read in another exactly inside the write's publish
window (issue 13), through the page store's test hook (PageStore.hook)."""
import threading

WAIT = 10  # seconds either side waits for the other before giving up


def in_window(db, write, read, point: str = "meta"):
    """Run ``write()`` in a new thread; when its first txn reaches ``point`` ("flushed":
    its pages written, not its meta record; "meta": the meta record written, the
    handle's state not yet moved), run ``read()`` in this thread, then let the write
    finish. Returns (write's result, read's result, whether the point was reached);
    re-raises what either raised (the read's first)."""
    store = db._store
    reached, resume, fired, out = threading.Event(), threading.Event(), [], {}

    def hook(where, txn):
        if where == point and not fired:
            fired.append(txn)
            reached.set()
            resume.wait(WAIT)

    def run():
        try:
            out["result"] = write()
        except BaseException as e:  # re-raised in the caller's thread
            out["error"] = e
        finally:
            reached.set()

    store.hook = hook
    t = threading.Thread(target=run, name="window-writer")
    t.start()
    try:
        assert reached.wait(WAIT), "the write neither reached the point nor ended"
        got = read()
    finally:
        resume.set()
        t.join(WAIT)
        store.hook = None
    assert not t.is_alive(), "the write did not finish"
    if "error" in out:
        raise out["error"]
    return out.get("result"), got, bool(fired)
