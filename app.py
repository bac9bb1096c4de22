#!/usr/bin/env python3
"""CDK entry point: `cdk synth -c stage=prod` or `python app.py`."""

from cdk_app.app_factory import build_app

build_app().synth()
