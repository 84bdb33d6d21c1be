"""Helpers shared by the reliability tests (loaded by conftest.py as
``greenback_reliability_support``; nothing under tests/ is importable by name).

The central one is :func:`nothing_left_behind`: a context manager that fails
the test if the code it wraps leaves a live greenlet beyond the per-thread idle
pool, a coroutine that was never awaited, an exception nobody could report
(``sys.unraisablehook``), or a portal object.
"""

from __future__ import annotations

import contextlib
import gc
import re
import sys
import threading
import warnings
import weakref
from typing import Any, Iterator, List

import greenlet

from greenback import _engine


# Collections that free all garbage: twice on CPython (finalizers may free
# more on the second pass). PyPy keeps whatever an object with a finalizer
# refers to alive until that finalizer has run, so a chain of them (a task,
# its portal, the coroutine in it, ...) goes one link per collection.
GC_PASSES = 6 if sys.implementation.name == "pypy" else 2


def collect(passes: int = GC_PASSES) -> None:
    """A full collection, finalizers included (see GC_PASSES)."""
    for _ in range(passes):
        gc.collect()


def _scan(passes: int = GC_PASSES) -> "tuple[List[greenlet.greenlet], List[Any]]":
    """After a collection: live greenlets (started, unfinished, not a thread's
    main greenlet) and Portal objects in memory."""
    collect(passes)
    greenlets, portals = [], []
    for obj in gc.get_objects():
        if isinstance(obj, greenlet.greenlet):
            if obj and obj.parent is not None:
                greenlets.append(obj)
        elif isinstance(obj, _engine.Portal):
            portals.append(obj)
    return greenlets, portals


def live_greenlets() -> List[greenlet.greenlet]:
    return _scan()[0]


def live_portals() -> List[Any]:
    return _scan()[1]


def _probe_gc_finalizes_running_coroutines() -> bool:
    """Whether the garbage collector finalizes a coroutine whose frame is
    running in a suspended greenlet, reporting "coroutine already executing".

    Checked with greenlet alone, no greenback. Until CPython 3.14 the collector
    could not see into a suspended greenlet's frames, so such a coroutine
    always looked alive from there, and was left to greenlet, which unwinds
    the greenlet (running its ``finally`` blocks) when freeing it. On CPython
    3.15 greenlet 3.5+ lets the collector traverse them
    (https://github.com/python-greenlet/greenlet/pull/511, using CPython
    3.15's new frame-visiting API): cycles through suspended greenlets become
    collectable, but the collector calls every finalizer in the garbage, in
    no order we control, and the coroutine's own, if it comes first, tries to
    close a running frame and fails. A portal's finalizer still unwinds the
    worker afterwards and every ``finally`` block runs; what remains is that
    one report, printed by CPython for any greenlet user (SQLAlchemy's
    greenlet_spawn too).
    """
    reports: List[str] = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: reports.append(str(unraisable.exc_value))

    async def running() -> None:
        greenlet.getcurrent().parent.switch()  # type: ignore[union-attr]

    class Cycle:
        pass

    try:
        coro = running()
        worker = greenlet.greenlet(coro.send)
        worker.switch(None)
        cycle = Cycle()
        cycle.self, cycle.worker = cycle, worker  # type: ignore[attr-defined]
        left = weakref.ref(cycle)
        del coro, worker, cycle
        collect()
        still = left()
        if still is not None:  # not collectable here: unwind it ourselves
            worker = still.worker
            del still.self, still.worker, still
            worker.throw()  # GreenletExit
            del worker
    finally:
        sys.unraisablehook = old_hook
    return any("already executing" in report for report in reports)


#: See :func:`_probe_gc_finalizes_running_coroutines`.
GC_FINALIZES_RUNNING_COROUTINES = _probe_gc_finalizes_running_coroutines()

#: How :func:`nothing_left_behind` records that report.
RUNNING_COROUTINE_FINALIZED = "ValueError(coroutine already executing)"


class Leftovers:
    """What :func:`nothing_left_behind` saw (for tests that want the figures)."""

    def __init__(self) -> None:
        self.unraisable: List[str] = []
        self.warnings: List[warnings.WarningMessage] = []
        self.extra_greenlets = 0
        self.pool_size = 0


@contextlib.contextmanager
def nothing_left_behind(
    *, allow_warnings: bool = False, allow_unraisable: bool = False, collects_running_portals: bool = False
) -> Iterator[Leftovers]:
    """Fail if the block leaves anything alive or unreported behind.

    Greenlets: the block may leave at most ``pool_size()`` idle workers (the
    bounded per-thread pool); after draining the pool, none may remain. No
    Portal may remain either, nor (unless allowed) any warning (such as
    "coroutine ... was never awaited") or unraisable exception.

    *collects_running_portals*: the block leaves a portal suspended in
    ``await_`` to the garbage collector. Where the collector finalizes
    coroutines running in suspended greenlets (see
    :data:`GC_FINALIZES_RUNNING_COROUTINES`), CPython's report of the task's
    coroutine "already executing" is expected, and left out of
    ``found.unraisable``; anywhere else it still fails the test.
    """
    found = Leftovers()
    _engine.drain_pool()
    with _only_new_objects():
        yield from _check_block(found, allow_warnings, allow_unraisable, collects_running_portals)


@contextlib.contextmanager
def _only_new_objects() -> Iterator[None]:
    """Let collections and gc.get_objects() see only what is created from here on.

    What the checked block leaves alive is new, and anything alive now is not
    the block's: gc.freeze() (CPython 3.7+) sets all of it aside, so a full
    collection and a scan of the heap cost milliseconds instead of the tenth
    of a second each they take once a test run has loaded its many modules.
    Old garbage stays frozen too, so its finalizers cannot run (and warn)
    inside the block. Elsewhere (PyPy) nothing changes, and the scans below
    tell old objects from new ones by weak reference.
    """
    freeze = getattr(gc, "freeze", None)
    if freeze is None:
        yield
        return
    freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _caused_by_freezing(caught: warnings.WarningMessage) -> bool:
    """Whether *caught* is a warning that only the frozen heap provokes.

    gc.get_referrers() does not look at frozen objects (_only_new_objects),
    and Hypothesis's register_random() asks it whether anything refers to a
    Random before warning that nothing does: its own thread-local Random,
    registered as each example runs, then seems unreferenced (seen on 3.14).
    """
    return caught.category.__name__ == "HypothesisWarning" and "register_random" in str(caught.message)


def _check_block(
    found: Leftovers, allow_warnings: bool, allow_unraisable: bool, collects_running_portals: bool
) -> Iterator[Leftovers]:
    """The body of nothing_left_behind(), inside _only_new_objects()."""
    # What is alive now is not the block's. Garbage whose finalizers have not
    # run yet may be counted here too: that only excuses those very objects
    # (weak references tell them from new ones at the same address), so two
    # passes do, even on PyPy. (Each full collection takes a good part of a
    # second there, once the test run has loaded its many modules.)
    greenlets, portals = _scan(passes=2)
    before = {id(g): weakref.ref(g) for g in greenlets}
    portals_before = {id(p): weakref.ref(p) for p in portals}
    del greenlets, portals
    old_hook = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        # Python 3.14 reports many of them with no object, naming the place
        # in the message instead ("Exception ignored while finalizing ...").
        if unraisable.object is None and unraisable.err_msg:
            where = unraisable.err_msg
        else:
            where = repr(unraisable.object)
        where = re.sub(r" at 0x[0-9a-f]+", "", where)
        report = f"{unraisable.exc_type.__name__}({unraisable.exc_value})"
        if collects_running_portals and GC_FINALIZES_RUNNING_COROUTINES and report == RUNNING_COROUTINE_FINALIZED:
            return
        found.unraisable.append(f"{report} in {where}")

    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield found
            greenlets, portals = _scan()  # finalizers may warn
        found.warnings = [w for w in caught if not _caused_by_freezing(w)]
    finally:
        sys.unraisablehook = old_hook

    def extra(greenlets: List[greenlet.greenlet]) -> List[greenlet.greenlet]:
        return [g for g in greenlets if id(g) not in before or before[id(g)]() is not g]

    leftover = extra(greenlets)
    new_portals = [p for p in portals if id(p) not in portals_before or portals_before[id(p)]() is not p]
    del greenlets, portals
    found.extra_greenlets = len(leftover)
    found.pool_size = _engine.pool_size()
    if not allow_unraisable:
        assert found.unraisable == [], f"unraisable exceptions: {found.unraisable}"
    if not allow_warnings:
        messages = [str(w.message) for w in found.warnings]
        assert messages == [], f"warnings: {messages}"
    assert new_portals == [], f"portals still alive: {new_portals}"
    assert len(leftover) <= _engine.pool_size(), (
        f"{len(leftover)} live greenlets left, but the idle pool holds only {_engine.pool_size()}: {leftover}"
    )
    del leftover
    _engine.drain_pool()
    # All the block's garbage is gone (above): the workers the pool lets go
    # are plain garbage, with no finalizer to wait for.
    leftover = extra(_scan(passes=2)[0])
    assert leftover == [], f"greenlets still alive after draining the pool: {leftover}"


def run_in_thread(fn: Any, *args: Any) -> Any:
    """Run fn(*args) in a new thread; return its result or raise its error."""
    box: List[Any] = []

    def target() -> None:
        try:
            box.append((True, fn(*args)))
        except BaseException as exc:  # noqa: B036 - re-raised in the caller
            box.append((False, exc))

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value


# -- hypothesis profiles -------------------------------------------------------
#
# Select one with GREENBACK_HYPOTHESIS_PROFILE (see docs/reliability.md):
#
# * ``ci`` (the default): few, derandomized examples, so that the suite stays
#   fast (about 20 seconds for this directory) and never fails by chance;
# * ``dev``: a few hundred random examples, for local work;
# * ``nightly``: many random examples, for a long soak run.
#
# The tests apply the profile with @settings(PROFILE): nothing is loaded
# globally, so other test directories keep their own hypothesis settings.

import os as _os

from hypothesis import HealthCheck as _HealthCheck, settings as _settings

_common: Any = dict(
    deadline=None,  # no timing assertions: the machine may be slow and busy
    suppress_health_check=[_HealthCheck.too_slow, _HealthCheck.data_too_large, _HealthCheck.filter_too_much],
    print_blob=True,
)
_settings.register_profile("greenback-ci", max_examples=600, derandomize=True, database=None, **_common)
_settings.register_profile("greenback-dev", max_examples=2_000, **_common)
_settings.register_profile("greenback-nightly", max_examples=50_000, **_common)

PROFILE_NAME = _os.environ.get("GREENBACK_HYPOTHESIS_PROFILE", "ci")
if PROFILE_NAME not in ("ci", "dev", "nightly"):
    raise RuntimeError(f"GREENBACK_HYPOTHESIS_PROFILE must be ci, dev or nightly, not {PROFILE_NAME!r}")
PROFILE = _settings.get_profile("greenback-" + PROFILE_NAME)
