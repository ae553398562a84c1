import sys

from ..cli import main

if __name__ == "__main__":  # the same as `avatar-studio gui ...`: problems are one line and an exit code
    sys.exit(main(["gui", *sys.argv[1:]]))
