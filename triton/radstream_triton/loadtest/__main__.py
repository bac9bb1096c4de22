import sys

from radstream_triton.loadtest.cli import main

sys.exit(main())
