"""`python -m brainwork` is the `brainwork` command."""

from brainwork.cli import main

raise SystemExit(main())
