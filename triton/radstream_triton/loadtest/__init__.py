"""Open-loop load tests for the RadStream pipeline (``python -m radstream_triton.loadtest``).

``profiles`` (arrival schedules), ``images`` (the real image set), ``runner`` (open
and closed loop over HTTP or gRPC), ``report`` (summary, thresholds, JSON, PNG) and
``cli``. See docs/loadtest.md.
"""
