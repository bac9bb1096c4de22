"""Lambda hooks, one package each (``lambdas.<hook>``): a thin handler.py over plain, testable logic.

Each Lambda zip holds these packages as they are here (``lambdas/__init__.py``, ``lambdas/common``,
``lambdas/<hook>``); the function's handler is ``lambdas.<hook>.handler.handler``. Modules import
each other absolutely (``from lambdas.<hook>.x import y``), in the repository, the tests and the zip.
"""
