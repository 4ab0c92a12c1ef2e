"""`clicktrack lag` against Kafka's own `kafka-consumer-groups --describe --all-groups`.

Both are one-shot commands over every group of the cluster, run as operators run them (a fresh
process each time, startup included), `--runs` times each, alternating. Ours also reads the age
of the oldest unconsumed record per lagging partition and judges a status; theirs prints
offsets and lag only. The rows both report (group, topic, partition) are compared: their lag
should agree unless a consumer moved between the two runs.

Needs the Kafka jars of the native stack (KAFKA_LIBS, default .stack/kafka/libs, else
/work/main/.stack/kafka/libs) and a Java runtime. Bounded: `--runs` (default 3, at most 10)
runs of each. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVERS = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def kafka_libs() -> Path:
    for candidate in (
        os.environ.get("KAFKA_LIBS"),
        ROOT / ".stack" / "kafka" / "libs",
        Path("/work/main/.stack/kafka/libs"),
    ):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    raise SystemExit("no Kafka jars found: set KAFKA_LIBS to the stack's kafka/libs folder")


def timed(cmd: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{cmd[0]} failed ({done.returncode}): {done.stderr[-500:]}")
    return elapsed, done.stdout


def theirs_rows(text: str) -> dict[tuple[str, str, int], int]:
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
        if len(parts) >= 6 and parts[2].isdigit() and parts[5].lstrip("-").isdigit():
            rows[(parts[0], parts[1], int(parts[2]))] = int(parts[5])
    return rows


def ours_rows(text: str) -> dict[tuple[str, str, int], int]:
    return {
        (g["group"], p["topic"], p["partition"]): p["lag"]
        for g in json.loads(text)
        for p in g["partitions"]
    }


def main(runs: int) -> dict[str, object]:
    java = shutil.which("java") or next(iter(sorted(Path("/usr/lib/jvm").glob("*/bin/java"))), None)
    if java is None:
        raise SystemExit("no java found")
    theirs_cmd = [
        str(java),
        "-Xmx256m",
        "-cp",
        f"{kafka_libs()}/*",
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        "--bootstrap-server",
        SERVERS,
        "--describe",
        "--all-groups",
    ]
    ours_cmd = [str(Path(sys.executable).parent / "clicktrack"), "lag", "--json", "--samples", "1"]
    ours_s, theirs_s = [], []
    ours_out = theirs_out = ""
    for _ in range(runs):
        elapsed, ours_out = timed(ours_cmd)
        ours_s.append(elapsed)
        elapsed, theirs_out = timed(theirs_cmd)
        theirs_s.append(elapsed)
    ours, theirs = ours_rows(ours_out), theirs_rows(theirs_out)
    common = ours.keys() & theirs.keys()
    agree = sum(1 for k in common if ours[k] == theirs[k])
    best_ours, best_theirs = min(ours_s), min(theirs_s)
    return {
        "bench": "lag_poll",
        "runs": runs,
        "groups": len({k[0] for k in ours}),
        "partitions_ours": len(ours),
        "partitions_theirs": len(theirs),
        "partitions_compared": len(common),
        "lag_agrees": agree,
        "clicktrack_lag_best_s": round(best_ours, 3),
        "kafka_consumer_groups_best_s": round(best_theirs, 3),
        "speedup_vs_kafka_consumer_groups": round(best_theirs / best_ours, 2),
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(main(max(1, min(args.runs, 10)))))
