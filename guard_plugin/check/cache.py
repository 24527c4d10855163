"""The verdict cache: a bounded LRU of parsed verdicts, keyed by policy fingerprint, model
and request."""

from __future__ import annotations

import threading
from collections import OrderedDict

from guard_plugin.verdict import Verdict

__all__ = ["VerdictCache"]


class VerdictCache:
    """A bounded LRU of parsed verdicts (``maxsize`` 0 disables it). Thread-safe."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[str, Verdict] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Verdict | None:
        if self.maxsize <= 0:
            return None
        with self._lock:
            v = self._data.get(key)
            if v is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return v

    def put(self, key: str, verdict: Verdict) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            self._data[key] = verdict
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
