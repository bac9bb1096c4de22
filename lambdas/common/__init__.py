"""Small helpers shared by the Lambda hooks (configuration from the environment, cached SSM reads).

Packaged with each hook that uses it as the top-level package ``common`` (beside the hook's own
files at the zip root); tests import it as ``lambdas.common``.
"""
