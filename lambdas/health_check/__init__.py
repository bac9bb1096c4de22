"""Post-deploy health gate and availability canary for the Triton workload (see handler.py)."""
