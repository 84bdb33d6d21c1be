"""Reading and replacing the coroutine an ``asyncio.Task`` steps.

The pure-Python Task keeps it in ``_coro``. The C-accelerated Task keeps it in
a struct field that Python can read (``get_coro()``) but not write, so we find
that field's offset once per Task type, by looking for the address of a
task's known coroutine in the object's memory, and write it with ctypes. The
same offset serves every subclass, since subclasses only append fields.
"""

from __future__ import annotations

import asyncio
import ctypes
from typing import Any, Dict

_PTR = ctypes.sizeof(ctypes.c_void_p)
# PyPy's ctypes has no pythonapi; it has no C Task either (its asyncio.Task
# is the pure-Python one, and _C_TASK_TYPES below is empty), so the code that
# uses these never runs there.
if hasattr(ctypes, "pythonapi"):
    _incref = ctypes.pythonapi.Py_IncRef
    _incref.argtypes = [ctypes.py_object]
    _incref.restype = None
    _decref = ctypes.pythonapi.Py_DecRef
    _decref.argtypes = [ctypes.py_object]
    _decref.restype = None

# The Task classes implemented in C; whichever base of a task's type is one of
# these decides the layout.
_C_TASK_TYPES = tuple(
    t for t in {asyncio.Task, getattr(asyncio.tasks, "_CTask", asyncio.Task)} if t is not getattr(asyncio.tasks, "_PyTask", None)
)
_PY_TASK = getattr(asyncio.tasks, "_PyTask", None)
_offsets: Dict[type, int] = {}  # byte offsets, per task type
_field_at = ctypes.c_void_p.from_address


def _c_base(task_type: type) -> type:
    for base in task_type.__mro__:
        if base in _C_TASK_TYPES and "__dict__" not in base.__dict__ and base.__module__ == "_asyncio":
            return base
    raise TypeError(f"{task_type.__name__} is not a C-accelerated asyncio.Task")


def _find_offset(task: Any, coro: Any) -> int:
    """The byte offset of the coroutine field in *task*'s C struct."""
    task_type = type(task)
    offset = _offsets.get(task_type)
    if offset is not None:
        return offset
    base = _c_base(task_type)
    words = ctypes.cast(ctypes.c_void_p(id(task)), ctypes.POINTER(ctypes.c_void_p))
    wanted = id(coro)
    hits = [i for i in range(base.__basicsize__ // _PTR) if words[i] == wanted]
    if len(hits) != 1:
        raise RuntimeError(
            "greenback could not locate the coroutine field of "
            f"{base.__module__}.{base.__qualname__} ({len(hits)} candidate offsets); "
            "please report this with your Python version"
        )
    _offsets[task_type] = hits[0] * _PTR
    return hits[0] * _PTR


def is_python_task(task: Any) -> bool:
    return _PY_TASK is not None and isinstance(task, _PY_TASK)


def get_task_coro(task: Any) -> Any:
    return task.get_coro()


def set_task_coro(task: Any, new: Any) -> None:
    """Make *task* step *new* instead of its current coroutine."""
    if is_python_task(task) or not isinstance(task, _C_TASK_TYPES):
        task._coro = new
        return
    old = task.get_coro()
    if old is None:
        raise RuntimeError(f"{task!r} has no coroutine to replace (it has finished)")
    field = _field_at(id(task) + _find_offset(task, old))
    if field.value != id(old):  # pragma: no cover - layout changed under us
        raise RuntimeError("greenback lost track of asyncio.Task's coroutine field")
    _incref(new)
    field.value = id(new)
    _decref(old)  # the field's reference; callers still hold their own
