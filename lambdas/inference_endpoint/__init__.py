"""Inference endpoint for Step Functions: one study image in S3 -> radstream_pipeline on Triton ->
structured findings returned, full result (mask included) written to S3.

Sibling imports: PythonFunction bundles this folder's files at the zip root, where the Lambda
runtime loads ``handler`` as a top-level module and relative imports fail; tests and tools import
``lambdas.inference_endpoint.<module>``, where they work. Each module therefore tries the relative
import first and falls back to the top-level one (``try: from .x import y`` / ``except ImportError``).
The shared helpers are imported the same way: ``lambdas.common`` in tests, ``common`` when bundled.
"""
