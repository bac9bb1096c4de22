"""Scale-event metrics for the Triton workload, published every minute (see handler.py)."""
