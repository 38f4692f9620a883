"""The whole pipeline under faults and SIGKILLs (see ``vlaa_data.testing.soak``).

    python benchmarks/soak.py                      # 500 samples, 10 kills
    python benchmarks/soak.py --samples 200 --kills 5 --seed 3

``vlaa-data run`` runs against a scripted server on 127.0.0.1 that injects 429 with
Retry-After, 500, slow replies, dropped connections, malformed JSON and truncated replies; the
run is killed with SIGKILL at random moments and started again, then run to the end. Prints the
faults injected, the kills, the samples per final state, duplicated results and repaid requests
(both must be 0), and how the export compares with a fault-free run on the same seed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from vlaa_data.testing.soak import SoakConfig, run_soak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    args = parser.parse_args()
    config = SoakConfig(
        samples=args.samples, kills=args.kills, seed=args.seed, fault_rate=args.fault_rate
    )
    with tempfile.TemporaryDirectory(prefix="vlaa-soak-") as folder:
        report = run_soak(Path(folder), config, log=lambda line: print(line, flush=True))
    print(json.dumps(report.to_dict(), indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
