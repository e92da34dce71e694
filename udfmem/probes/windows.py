"""Window peaks: each UDF's peak RSS since its own previous snapshot, over one kernel counter.

The kernel keeps one peak per process (``getrusage``'s ``ru_maxrss``), and reading a
window restarts it (``5`` written to ``/proc/self/clear_refs``). Each restart ends an
*epoch*; a window's peak is the highest kernel peak over the epochs since it began.
Those are kept as a stack of suffix maxima: (epoch, peak) pairs with peaks strictly
falling, so a window's peak is that of the first pair at or after its first epoch (a
binary search). A ``take`` costs O(log W) for W live windows, whatever their number,
where folding the kernel peak into every open window cost O(W) per snapshot.
"""

from __future__ import annotations

import bisect
import collections
import threading
from typing import Protocol


class Kernel(Protocol):
    """The kernel counter the windows share (:class:`udfmem.probes.process.Probes` is one)."""

    def peak(self) -> int | None:
        """Peak RSS in bytes since the last :meth:`reset_peak`."""

    def reset_peak(self) -> bool:
        """Restart the kernel's peak at the current RSS; False where impossible."""


class PeakWindows:
    """Window peaks of several UDFs in one process over one kernel counter.

    Each UDF's ``peak_rss_mb`` covers everything since its own window last began, though
    every ``take`` restarts the kernel's peak. When a ``take`` is given the RSS just read
    and the kernel's peak is no higher, a restart would change nothing: it is skipped
    (with its descriptor check and write, ~1.4 µs), and that RSS is remembered as the
    least the next epoch's peak is, as a restart would have made it.

    Never waits on itself: :meth:`close` runs from a finalizer (a UDF's state collected),
    which the garbage collector may run inside :meth:`take` on the same thread; there it
    only queues the id (the next ``open`` or ``take`` forgets it). A ``take`` re-entered on
    the thread already inside one reads the kernel's peak without recording or restarting.
    A closed window is forgotten: memory stays O(live windows).
    """

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._epoch = 0  # restarts so far: the number of the epoch running now
        self._starts: dict[int, int] = {}  # each live window's first epoch
        self._epochs: list[int] = []  # the stack: epochs rising ...
        self._peaks: list[int] = []  # ... their peaks falling: the highest from that epoch on
        self._floor = 0  # the least the running epoch's peak is (the RSS at a skipped restart)
        self._restarted = False  # the last restart worked: skipping one keeps the window's meaning
        self._next_id = 1
        self._lock = threading.Lock()
        self._closed: collections.deque[int] = collections.deque()  # ids to forget, appended without the lock
        self._holder = 0  # the thread inside take or open

    def __len__(self) -> int:
        """The number of live windows."""
        return len(self._starts)

    def remembered(self) -> tuple[int, int]:
        """Live windows, and (epoch, peak) pairs kept for them: both O(live windows)."""
        return len(self._starts), len(self._epochs)

    def open(self) -> int:
        """A new window, beginning in the running epoch; its id."""
        me = threading.get_ident()
        with self._lock:
            self._holder = me
            try:
                if self._closed:
                    self._forget_closed()
                wid = self._next_id
                self._next_id = wid + 1
                self._starts[wid] = self._epoch
            finally:
                self._holder = 0
        return wid

    def close(self, wid: int) -> None:
        """Forget window ``wid`` (its UDF is gone). Never waits: it runs from finalizers.

        Inside our own ``take`` on this thread (the collector ran there), or while another
        thread holds the lock (in a fork child, a thread of the parent that no longer exists
        may hold it forever), the id is queued and the next ``open`` or ``take`` forgets it.
        """
        lock = self._lock
        if self._holder == threading.get_ident() or not lock.acquire(blocking=False):
            self._closed.append(wid)
            return
        try:
            self._starts.pop(wid, None)
        finally:
            lock.release()

    def _forget_closed(self) -> None:
        """Under the lock: drop the windows :meth:`close` queued."""
        closed, starts = self._closed, self._starts
        while closed:
            starts.pop(closed.popleft(), None)

    def take(self, wid: int, rss: int | None = None) -> tuple[int | None, bool]:
        """Peak RSS since window ``wid`` last began, and whether it is the lifetime peak; restart the window.

        ``rss``: the resident bytes read just before, if any (lets an idle restart be skipped).
        """
        kernel = self._kernel
        me = threading.get_ident()
        if self._holder == me:  # re-entered inside our own take: never wait on ourselves
            return kernel.peak(), True
        with self._lock:
            self._holder = me
            try:
                if self._closed:
                    self._forget_closed()
                peak = kernel.peak()
                if peak is not None and peak < self._floor:
                    peak = self._floor
                if rss is not None and peak is not None and peak <= rss and self._restarted:
                    lifetime, self._floor = False, rss  # nothing to restart: the next epoch starts at rss
                else:
                    lifetime = not kernel.reset_peak()
                    self._restarted = not lifetime
                    self._floor = 0
                found = self._record(wid, peak)
            finally:
                self._holder = 0
        return (found or peak), lifetime

    def _record(self, wid: int, peak: int | None) -> int:
        """Under the lock: end the running epoch at ``peak``; window ``wid``'s peak (0: none known); restart it."""
        epoch = self._epoch
        epochs, peaks = self._epochs, self._peaks
        if peak is not None:
            while peaks and peaks[-1] <= peak:
                peaks.pop()
                epochs.pop()
            epochs.append(epoch)
            peaks.append(peak)
        self._epoch = epoch + 1
        start = self._starts.get(wid)
        if start is None:  # unknown or closed: the kernel's peak, and nothing remembered
            return 0
        self._starts[wid] = epoch + 1
        at = bisect.bisect_left(epochs, start)
        found = peaks[at] if at < len(peaks) else 0
        if len(epochs) > 2 * len(self._starts) + 16:
            self._compact()
        return found

    def _compact(self) -> None:
        """Under the lock: keep only the pairs some live window's peak is read from (at most one per window).

        A window reads the first pair at or after its first epoch; a pair no window reads
        first is lower than one before it that all its readers also read, so it can go.
        """
        epochs, peaks = self._epochs, self._peaks
        keep = sorted({bisect.bisect_left(epochs, start) for start in self._starts.values()})
        keep = [i for i in keep if i < len(epochs)]
        self._epochs = [epochs[i] for i in keep]
        self._peaks = [peaks[i] for i in keep]
