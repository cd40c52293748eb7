"""``python -m android_bridge [SERIAL MODEL_DIR]``: list the attached phones, or bench a
model folder on one (``edgelm devices`` / ``edgelm bench MODEL_DIR --device adb:SERIAL``)."""

from __future__ import annotations

import sys

from edgelm.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit(main(["devices"]))
    if len(args) >= 2:
        sys.exit(main(["bench", args[1], "--device", f"adb:{args[0]}", *args[2:]]))
    print("usage: python -m android_bridge [SERIAL MODEL_DIR [edgelm bench options]]", file=sys.stderr)
    sys.exit(2)
