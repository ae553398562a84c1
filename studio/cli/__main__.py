"""`python -m studio.cli ARGS…` = `avatar-studio ARGS…` (torchrun starts each process of a stage this way)."""
import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
