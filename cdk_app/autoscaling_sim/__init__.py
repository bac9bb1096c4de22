"""Autoscaling simulation: the Kubernetes HPA controller, the cluster and Triton pods, replayed second by second.

``python -m cdk_app.autoscaling_sim`` (``make autoscale-report``) writes the report;
docs/autoscaling.md explains the model and its sources.
"""
