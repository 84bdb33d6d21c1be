"""The exception classes greenback raises beyond Python's own.

Where code written for greenback 1.3.0 may catch what 1.3.0 raised for a
mistake, ours is an instance of that class too (as well as of the class that
describes it best); tests/clients/test_error_classes.py checks each case.
This module imports nothing of greenback's, so every other module can use it.
"""

from __future__ import annotations

import sys

import sniffio


class MissingIntegrationError(RuntimeError):
    """No loop integration is installed for the async library that is running."""


class NoLoopError(sniffio.AsyncLibraryNotFoundError):
    """greenback was called where no async library runs: outside any event
    loop, in a thread other than the loop's, in an asyncio callback.

    A RuntimeError; also sniffio's AsyncLibraryNotFoundError, which 1.3.0
    raised in these places (it asked sniffio for the current task first).
    """


class NotATaskError(TypeError, AssertionError):
    """bestow_portal() was given something that is not a task of any loop.

    A TypeError; also an AssertionError, which 1.3.0 raised (it asserted
    that the object was an asyncio.Task).
    """


# What ``async with`` raises for an object lacking __aenter__ or __aexit__ on
# this Python, and so what async_context() raises (1.3.0 did the same, and its
# tests compare the class with native ``async with``'s).
NOT_AN_ASYNC_CONTEXT_MANAGER: type[Exception] = TypeError if sys.version_info >= (3, 11) else AttributeError


class ExitWithoutEnterError(RuntimeError, AttributeError):
    """async_context.__exit__() was called without __enter__().

    A RuntimeError; also an AttributeError, which 1.3.0 raised (it read an
    attribute only __enter__ sets).
    """
