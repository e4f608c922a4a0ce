import sys

from torchwork.cli import main

sys.exit(main())
