"""`python -m litemx.adapters.cli` (the same as the `litemx` console script)."""

from litemx.adapters.cli.main import main

main()
