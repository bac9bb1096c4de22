"""How a hook's handler finds its siblings in the Lambda zip.

The modules of a hook folder import each other as the package ``lambdas.<hook>``
(tests, mypy). In the zip, the folder is the zip root and the runtime imports
``handler.py`` as a top-level module with no package; ``register_package`` then
registers the folder under the package name, so every import resolves as in the
repository. (``common`` itself is staged at the zip root by ``cdk_app.hooks``.)
"""

from __future__ import annotations

import sys
import types


def register_package(package: str, folder: str) -> None:
    """Make ``package`` (e.g. ``lambdas.health_check``) import its modules from ``folder``."""
    parent = package.rpartition(".")[0]
    for name, path in ((parent, []), (package, [folder])):
        if name and name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = path
            sys.modules[name] = module
