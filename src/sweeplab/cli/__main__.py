import sys

from sweeplab.cli.main import main

sys.exit(main())
