"""Inference endpoint for Step Functions: one study image in S3 -> radstream_pipeline on Triton ->
structured findings returned, full result (mask included) written to S3."""
