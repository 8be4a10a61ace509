"""`python -m difflod` runs the command-line interface."""

from difflod.cli import main

raise SystemExit(main())
