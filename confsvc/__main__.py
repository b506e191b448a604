import sys

from confsvc.cli import main

sys.exit(main())
