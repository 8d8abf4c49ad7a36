import sys

from spprof.cli import main

sys.exit(main())
