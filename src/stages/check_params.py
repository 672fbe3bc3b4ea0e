"""DVC stage `check_params`: validate params.yaml before any stage that does real work.

Every other stage depends on this stage's output, whose content never changes, so a
bad param stops `dvc repro` here, before DVC clears any earlier output, and a good
change of params retrains nothing by itself. Params that ask for more images than the
dataset has are refused here too; image counts too small for the statistics are warned of.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from initstudy.atomic import write_text
from initstudy.errors import stage_main
from initstudy.params import load_params, small_sample_warnings


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, help="marker file to write (without it: only check)")
    args = parser.parse_args()
    for warning in small_sample_warnings(load_params(sizes=True)):
        print(f"warning: {warning}", file=sys.stderr)
    if args.out:  # every stage depends on these bytes: they never change (the path is where the schema was)
        write_text(args.out, "params.yaml fits the schema of src/initstudy/params.py\n")


if __name__ == "__main__":
    main()
