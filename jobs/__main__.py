"""Entry point: `python -m jobs <command>`."""
import sys

from jobs.cli import main

sys.exit(main())
