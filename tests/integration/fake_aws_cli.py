"""``aws lambda invoke`` for the pipeline gate step's test: the CLI's option handling over the real botocore.

Only what the step uses: ``lambda invoke --function-name --payload --cli-binary-format
--cli-read-timeout --cli-connect-timeout OUTFILE``. The global options mean what the AWS CLI's
documentation says ("The maximum socket read time in seconds. If the value is set to 0, the socket
read will be blocking and not timeout. The default value is 60 seconds."); retries are botocore's
own (``standard`` mode, the CLI v2 default; ``AWS_MAX_ATTEMPTS`` honoured). The request goes to
``FAKE_LAMBDA_ENDPOINT`` through botocore's Lambda client, so timeouts and retries are botocore's.

``FAKE_AWS_TIME_SCALE`` shrinks every CLI time (the 60 s default included) by the same factor
the fake Lambda shrinks the gate's run time, so that a gate "longer than 60 s" is tested in seconds.
"""

from __future__ import annotations

import json
import os
import sys

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

CLI_DEFAULT_TIMEOUT_SECONDS = 60.0


def _timeout(value: str | None, scale: float) -> float | None:
    seconds = CLI_DEFAULT_TIMEOUT_SECONDS if value is None else float(value)
    return None if seconds == 0 else seconds * scale


def main(argv: list[str]) -> int:
    if argv[:2] != ["lambda", "invoke"]:
        print(f"fake aws: only 'lambda invoke' is emulated, not {argv[:2]}", file=sys.stderr)
        return 252
    options: dict[str, str] = {}
    positional: list[str] = []
    rest = argv[2:]
    while rest:
        item = rest.pop(0)
        if item.startswith("--"):
            options[item[2:]] = rest.pop(0)
        else:
            positional.append(item)
    (outfile,) = positional
    scale = float(os.environ.get("FAKE_AWS_TIME_SCALE", "1"))
    attempts = int(os.environ.get("AWS_MAX_ATTEMPTS", "3"))
    config = Config(
        read_timeout=_timeout(options.get("cli-read-timeout"), scale),
        connect_timeout=_timeout(options.get("cli-connect-timeout"), scale),
        retries={"mode": "standard", "total_max_attempts": attempts},
    )
    client = botocore.session.get_session().create_client(
        "lambda", region_name="us-east-1", endpoint_url=os.environ["FAKE_LAMBDA_ENDPOINT"], config=config
    )
    payload = options.get("payload", "{}").encode()
    try:
        response = client.invoke(FunctionName=options["function-name"], Payload=payload)
    except (BotoCoreError, ClientError) as error:
        # What the CLI prints for a failed call (for a read timeout: "Read timeout on endpoint URL: ...").
        print(f"\n{error}", file=sys.stderr)
        return 255
    with open(outfile, "wb") as out:
        out.write(response["Payload"].read())
    shown = {"StatusCode": response["StatusCode"], "ExecutedVersion": response.get("ExecutedVersion", "$LATEST")}
    if "FunctionError" in response:
        shown["FunctionError"] = response["FunctionError"]
    print(json.dumps(shown, indent=4))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
