"""A bounded local cache of object bytes: memory first, then an optional folder.

Objects are immutable (their keys carry a random token), so a cached chunk is
never stale and the cache is never invalidated; a folder can even be shared by
processes (files appear by rename, whole). The unit is a chunk of an object
(``CHUNK`` bytes, aligned); a miss is one ranged GET of that chunk.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict

CHUNK = 256 * 1024


class ChunkCache:
    hits: int
    disk_hits: int
    misses: int
    def __init__(self, memory_bytes: int = 64 << 20, folder: str | None = None,
                 folder_bytes: int = 1 << 30):
        self.memory_bytes = memory_bytes
        self.folder = folder
        self.folder_bytes = folder_bytes
        self._mem: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()
        self._written = 0          # bytes written to the folder since its last trim
        self.hits = self.disk_hits = self.misses = 0
        if folder:
            os.makedirs(folder, exist_ok=True)

    @staticmethod
    def _path(folder: str, key: str, chunk: int) -> str:
        h = hashlib.sha1(key.encode()).hexdigest()
        return os.path.join(folder, f"{h}-{chunk}")

    def get(self, key: str, chunk: int) -> bytes | None:
        with self._lock:
            data = self._mem.get((key, chunk))
            if data is not None:
                self._mem.move_to_end((key, chunk))
                self.hits += 1
                return data
        if self.folder:
            try:
                with open(self._path(self.folder, key, chunk), "rb") as f:
                    data = f.read()
            except OSError:
                data = None
            if data is not None:
                self.disk_hits += 1
                self._remember(key, chunk, data)
                return data
        self.misses += 1
        return None

    def put(self, key: str, chunk: int, data: bytes) -> None:
        self._remember(key, chunk, data)
        if self.folder:
            path = self._path(self.folder, key, chunk)
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
                self._written += len(data)
                if self._written > self.folder_bytes // 8:
                    self._trim_folder()
            except OSError:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def _remember(self, key: str, chunk: int, data: bytes) -> None:
        with self._lock:
            old = self._mem.pop((key, chunk), None)
            if old is not None:
                self._used -= len(old)
            self._mem[(key, chunk)] = data
            self._used += len(data)
            while self._used > self.memory_bytes and len(self._mem) > 1:
                _, dropped = self._mem.popitem(last=False)
                self._used -= len(dropped)

    def _trim_folder(self) -> None:
        """Delete the least recently modified files until the folder is under its bound."""
        self._written = 0
        try:
            entries = []
            for e in os.scandir(self.folder):
                if e.is_file():
                    st = e.stat()
                    entries.append((st.st_mtime, st.st_size, e.path))
        except OSError:
            return
        total = sum(s for _, s, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.folder_bytes:
                break
            try:
                os.unlink(path)
                total -= size
            except OSError:
                pass

    def clear_memory(self) -> None:
        with self._lock:
            self._mem.clear()
            self._used = 0
