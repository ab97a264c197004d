#!/usr/bin/env python3
"""The example worker is built twice over: by its own manifest (Examples/inventory-worker, what a
user copies) and, in `make test`, by the InventoryWorker target of GPS's manifest (so that no
dependency is built twice). This checks that both build the same sources with the same products,
so neither drifts from the other. Usage: check-example-manifest.py SWIFT"""
import json
import subprocess
import sys

swift = sys.argv[1] if len(sys.argv) > 1 else "swift"


def target(arguments):
    manifest = json.loads(subprocess.run([swift, "package", *arguments, "dump-package"], check=True,
                                         capture_output=True, text=True).stdout)
    return next(t for t in manifest["targets"] if t["name"] == "InventoryWorker")


def names(found):
    """The products (or this package's targets, named alike) a target depends on."""
    return sorted(next(iter(dependency.values()))[0] for dependency in found["dependencies"])


example = target(["--package-path", "Examples/inventory-worker", "--scratch-path", ".build-example"])
ours = target([])
if names(example) != names(ours):
    sys.exit(f"the example's manifest depends on {names(example)} but GPS's InventoryWorker target on "
             f"{names(ours)}: make Package.swift and Examples/inventory-worker/Package.swift agree")
if ours.get("path") != "Examples/inventory-worker/Sources/InventoryWorker" or ours.get("packageAccess") is not False:
    sys.exit("GPS's InventoryWorker target must build Examples/inventory-worker/Sources/InventoryWorker "
             "with packageAccess: false (the public API only)")
print(f"the example's manifest and GPS's InventoryWorker target agree: {', '.join(names(ours))}")
