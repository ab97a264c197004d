"""DBOS 3.4 running the seed's two-step flow on a PostgreSQL database, for `gps-bench --only store`.

Each workflow is durable in DBOS's way: its start, each step's output and its end are written to
the database. Its steps call the same services as GPS's flow does: A.Prepare, then B.Process with
the manifest A returned (grpcio, one channel each). N workflows are started at once
(DBOS.start_workflow, DBOS's own executor) and their results awaited; one line says how many
completed per second, from the first start to the last result.

    .build-venv/bin/python scripts/bench-dbos.py --database-url postgresql://USER:PASSWORD@HOST:PORT/DB \
        --a HOST:PORT --b HOST:PORT --runs 2000
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".build-venv", "stubs"))

import grpc  # noqa: E402
from dbos import DBOS  # noqa: E402
from gps.v1 import a_pb2_grpc, b_pb2_grpc, common_pb2  # noqa: E402

SERVICES = {}


@DBOS.step()
def prepare(dataset: str) -> bytes:
    manifest = SERVICES["a"].Prepare(common_pb2.DataInfo(object_storage_urls=["a"], dataset=dataset))
    return manifest.SerializeToString()


@DBOS.step()
def process(manifest: bytes) -> str:
    return SERVICES["b"].Process(common_pb2.Manifest.FromString(manifest)).message


@DBOS.workflow()
def server_flow(dataset: str) -> str:
    return process(prepare(dataset))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--a", required=True)
    parser.add_argument("--b", required=True)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    if args.runs < 1:
        print("bench-dbos: --runs must be at least 1", file=sys.stderr)
        return 2
    SERVICES["a"] = a_pb2_grpc.AStub(grpc.insecure_channel(args.a))
    SERVICES["b"] = b_pb2_grpc.BStub(grpc.insecure_channel(args.b))
    DBOS(config={"name": "gps-bench-dbos", "system_database_url": args.database_url, "log_level": "WARNING"})
    DBOS.launch()
    try:
        # One workflow first: connections, schema and code paths warm, as GPS's queue is opened.
        server_flow("warm")
        start = time.monotonic()
        handles = [DBOS.start_workflow(server_flow, "b") for _ in range(args.runs)]
        results = [handle.get_result() for handle in handles]
        elapsed = time.monotonic() - start
    finally:
        DBOS.destroy()
    if len(results) != args.runs or not all(results):
        print(f"bench-dbos: {args.runs - sum(1 for r in results if r)} workflows did not complete", file=sys.stderr)
        return 1
    print(f"dbos {args.runs} workflows {elapsed:.3f} s {args.runs / elapsed:.1f} workflows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
