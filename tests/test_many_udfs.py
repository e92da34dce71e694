"""Many UDFs in one process: window peaks stay right and the timer visits only what is due.

Behaviour, not speed (``benchmarks/bench_many_udfs.py`` has the figures): the window
peaks over a stack of suffix maxima give the peaks the simple fold into every open window
gave, closed windows are forgotten, and a timer with thousands of watched states visits
only those due (counted with a fake clock, no thread, no sleep).
"""

from __future__ import annotations

import gc
import random

from udfmem.probes.windows import PeakWindows
from udfmem.runtime.timer import MAX_WAIT_S, Timer


class Kernel:
    """A process's peak counter as the kernel keeps it: the highest RSS since the last restart."""

    def __init__(self, rss: int = 100) -> None:
        self.rss = rss
        self.high = rss
        self.restarts = 0

    def move(self, rss: int) -> None:
        """The process's RSS is now ``rss``."""
        self.rss = rss
        self.high = max(self.high, rss)

    def peak(self) -> int | None:
        """The highest RSS since the last restart."""
        return self.high

    def reset_peak(self) -> bool:
        """Restart the peak at the current RSS."""
        self.high = self.rss
        self.restarts += 1
        return True


class Scripted:
    """A kernel counter reading a given sequence of peaks (None: unknown), restarted each time."""

    def __init__(self, peaks: list[int | None]) -> None:
        self.peaks = peaks
        self.at = 0

    def peak(self) -> int | None:
        """The next scripted peak."""
        return self.peaks[self.at]

    def reset_peak(self) -> bool:
        """Move on to the next scripted peak."""
        self.at += 1
        return True


class FoldWindows:
    """The reference model: every take folds the kernel's peak into every open window (O(W) per take)."""

    def __init__(self, kernel: Kernel | Scripted) -> None:
        self.kernel = kernel
        self.peaks: dict[int, int] = {}
        self.next_id = 1

    def open(self) -> int:
        """A new window."""
        wid = self.next_id
        self.next_id += 1
        self.peaks[wid] = 0
        return wid

    def close(self, wid: int) -> None:
        """Forget a window."""
        self.peaks.pop(wid, None)

    def take(self, wid: int) -> int | None:
        """Fold the kernel's peak into every window, restart the kernel; window ``wid``'s peak."""
        kernel_peak = self.kernel.peak()
        self.kernel.reset_peak()
        if kernel_peak is not None:
            for key, value in self.peaks.items():
                self.peaks[key] = max(value, kernel_peak)
        peak = self.peaks.get(wid) or kernel_peak
        if wid in self.peaks:
            self.peaks[wid] = 0
        return peak


def drive(seed: int, steps: int, with_rss: bool) -> tuple[list[int | None], list[int | None], int]:
    """Random RSS moves, opens, takes and closes, applied to both models; their peaks, and the live windows left."""
    rng = random.Random(seed)
    model_kernel, ref_kernel = Kernel(), Kernel()
    model, ref = PeakWindows(model_kernel), FoldWindows(ref_kernel)
    live: list[tuple[int, int]] = []
    got: list[int | None] = []
    want: list[int | None] = []
    for _ in range(steps):
        action = rng.random()
        if action < 0.3:
            rss = max(1, model_kernel.rss + rng.randint(-50, 50))
            model_kernel.move(rss)
            ref_kernel.move(rss)
        elif action < 0.4 or not live:
            live.append((model.open(), ref.open()))
        elif action < 0.45:
            mine, theirs = live.pop(rng.randrange(len(live)))
            model.close(mine)
            ref.close(theirs)
        else:
            mine, theirs = rng.choice(live)
            got.append(model.take(mine, model_kernel.rss if with_rss else None)[0])
            want.append(ref.take(theirs))
    return got, want, len(model)


def test_window_peaks_equal_the_fold_into_every_window_over_random_sequences() -> None:
    """20,000 random opens, takes, closes and RSS moves: each take's peak equals the reference fold's.

    The reference restarts the kernel at every take; the windows are also given the RSS,
    so they skip the restarts that would clear nothing, and must still agree.
    """
    for seed in range(4):
        got, want, _ = drive(seed, 5_000, with_rss=True)
        assert want == got
        got, want, _ = drive(seed, 5_000, with_rss=False)
        assert want == got


def test_window_peaks_equal_the_fold_with_unknown_kernel_peaks() -> None:
    """Where the kernel's peak is sometimes unknown (None), a window's peak is still the fold's."""
    rng = random.Random(7)
    script: list[int | None] = [None if rng.random() < 0.2 else rng.randint(1, 1000) for _ in range(4_001)]
    model, ref = PeakWindows(Scripted(script)), FoldWindows(Scripted(list(script)))
    live = [(model.open(), ref.open()) for _ in range(20)]
    got, want = [], []
    for _ in range(4_000):
        mine, theirs = rng.choice(live)
        got.append(model.take(mine)[0])
        want.append(ref.take(theirs))
    assert want == got


def test_a_window_sees_a_transient_another_window_cleared() -> None:
    """Window A's peak includes a transient that ended before window B's take restarted the kernel."""
    kernel = Kernel(100)
    windows = PeakWindows(kernel)
    a, b = windows.open(), windows.open()
    kernel.move(500)  # a transient ...
    kernel.move(120)  # ... freed again
    assert (500, False) == windows.take(b, kernel.rss)
    kernel.move(130)
    assert (500, False) == windows.take(a, kernel.rss)
    assert (130, False) == windows.take(b, kernel.rss)


def test_a_flat_window_skips_the_restart() -> None:
    """With nothing to clear (the kernel's peak is the RSS) a take writes nothing; a peak brings the restart back."""
    kernel = Kernel(100)
    windows = PeakWindows(kernel)
    wid = windows.open()
    windows.take(wid, kernel.rss)  # the first restart proves restarts work here
    restarts = kernel.restarts
    for _ in range(10):
        assert (100, False) == windows.take(wid, kernel.rss)
    assert restarts == kernel.restarts
    kernel.move(300)
    kernel.move(200)
    assert (300, False) == windows.take(wid, kernel.rss)
    assert restarts + 1 == kernel.restarts


def test_closed_windows_are_forgotten() -> None:
    """10,000 windows opened, taken and closed: none is remembered, and the stack stays small."""
    kernel = Kernel(100)
    windows = PeakWindows(kernel)
    keep = windows.open()
    rng = random.Random(3)
    for _ in range(10_000):
        wid = windows.open()
        kernel.move(rng.randint(50, 5_000))
        windows.take(wid, kernel.rss)
        windows.close(wid)
    windows.take(keep, kernel.rss)
    live, pairs = windows.remembered()
    assert 1 == live
    assert pairs <= 2 * live + 17


def test_a_close_from_a_finalizer_inside_take_is_queued() -> None:
    """A window closed on the thread inside take (a finalizer run by the collector) is forgotten by the next take."""
    doomed: list[int] = []

    class Reentering(Kernel):
        """A kernel whose peak read closes a window, as a finalizer run inside the take would."""

        def peak(self) -> int | None:
            """Close the doomed window from inside the take."""
            while doomed:
                windows.close(doomed.pop())
            return super().peak()

    windows = PeakWindows(Reentering(100))
    survivor = windows.open()
    doomed.append(windows.open())
    windows.take(survivor, 100)
    assert 2 == len(windows)  # queued, not waited for (and not deadlocked)
    windows.take(survivor, 100)
    assert 1 == len(windows)


class Counted:
    """A watched state that asks for a visit every ``period`` seconds and counts its visits."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.visits = 0

    def tick(self, now: float) -> float | None:
        """Count the visit; come back in ``period``."""
        self.visits += 1
        return now + self.period

    def tick_failed(self, exc: Exception) -> None:
        """Never called here."""


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        """The time now."""
        return self.now


def test_the_timer_visits_only_the_states_that_are_due() -> None:
    """5,000 states due every 60 s and one due every second: a pass at +1 s visits only that one."""
    clock = Clock()
    timer = Timer(clock=clock, thread=False)
    slow = [Counted(60.0) for _ in range(5_000)]
    fast = Counted(1.0)
    for state in slow:
        timer.watch(state, at=clock.now + 60.0)
    timer.watch(fast, at=clock.now + 1.0)
    assert 1.0 == timer.run_once(clock.now)  # nothing due yet: the next is 1 s away
    assert 0 == fast.visits + sum(s.visits for s in slow)
    for second in range(1, 60):
        clock.now += 1.0
        assert 1.0 == timer.run_once(clock.now)
        assert second == fast.visits
    assert 0 == sum(s.visits for s in slow)
    clock.now += 1.0
    timer.run_once(clock.now)
    assert [1] * 5_000 == [s.visits for s in slow]


def test_the_timer_visits_a_woken_state_now_and_only_once() -> None:
    """A state woken three times before a pass is visited once; the others are not visited."""
    clock = Clock()
    timer = Timer(clock=clock, thread=False)
    states = [Counted(30.0) for _ in range(100)]
    for state in states:
        timer.watch(state, at=clock.now + 30.0)
    for _ in range(3):
        timer.wake(states[7])
    timer.run_once(clock.now)
    assert [1 if i == 7 else 0 for i in range(100)] == [s.visits for s in states]


def test_a_state_watched_without_a_time_is_visited_at_the_next_pass() -> None:
    """watch() with no first visit: due now; the next pass visits it."""
    clock = Clock()
    timer = Timer(clock=clock, thread=False)
    state = Counted(5.0)
    timer.watch(state)
    assert 5.0 == timer.run_once(clock.now)
    assert 1 == state.visits


def test_collected_states_leave_the_timer() -> None:
    """States collected while watched are dropped by the passes; the timer holds none of them."""
    clock = Clock()
    timer = Timer(clock=clock, thread=False)
    keep = Counted(1.0)
    timer.watch(keep, at=clock.now)
    gone = [Counted(1.0) for _ in range(1_000)]
    for state in gone:
        timer.watch(state, at=clock.now)
    timer.run_once(clock.now)
    del gone, state
    gc.collect()
    for _ in range(3):
        clock.now += 1.0
        timer.run_once(clock.now)
    assert 1 == timer.watched()
    assert 4 == keep.visits
    assert MAX_WAIT_S >= timer.run_once(clock.now)
