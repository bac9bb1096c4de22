"""Tooling around RadStream's Triton model repository.

Builds the reference ONNX networks, generates the CPU repository that the local
platform serves, and starts the real ``tritonserver`` through ``start_triton.sh``.
"""
