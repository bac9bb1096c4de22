#!/usr/bin/env python3
"""CDK entry point: `cdk synth -c stage=prod` or `python app.py`."""

import sys

from cdk_app.app_factory import build_app
from cdk_app.config import ConfigError

try:
    build_app().synth()
except ConfigError as error:
    sys.exit(f"RadStream config error: {error}")
