import sys

from vmsnap.cli import main

sys.exit(main())
