"""An independent client for services A and B: Python grpcio with stubs generated from protos/.

Run by `make test` (which creates the virtual environment and the stubs):
    .build-venv/bin/python Tests/python/test_services.py --gps .build/debug/gps
"""

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", ".build-venv", "stubs"))

import grpc  # noqa: E402
from gps.v1 import a_pb2_grpc, b_pb2_grpc, common_pb2  # noqa: E402
import health_pb2  # noqa: E402
import health_pb2_grpc  # noqa: E402

GPS = None


class Server:
    """`gps server NAME --port 0 ARGS`, with the address it prints."""

    def __init__(self, name, *args):
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [GPS, "server", name, "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"gps server {name} did not start: {line!r} {self.log()}")
        self.address = line[len("listening on "):].strip()
        self.channel = grpc.insecure_channel(self.address)

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read().decode()

    def stop(self):
        self.channel.close()
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


class ServicesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.TemporaryDirectory()
        cls.objects = {"a": b"object a\n", "bucket/k.csv": b"id\n1\n2\n", "bucket/big.bin": os.urandom(300_000)}
        for key, data in cls.objects.items():
            path = os.path.join(cls.root.name, key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        cls.a = Server("a", "--object-root", cls.root.name, "--max-request-bytes", "4096")
        cls.b = Server("b")
        cls.stub_a = a_pb2_grpc.AStub(cls.a.channel)
        cls.stub_b = b_pb2_grpc.BStub(cls.b.channel)

    @classmethod
    def tearDownClass(cls):
        codes = (cls.a.stop(), cls.b.stop())
        cls.root.cleanup()
        assert codes == (0, 0), f"servers exited with {codes}"

    def prepare(self, urls, dataset="ds", metadata=()):
        return self.stub_a.Prepare(
            common_pb2.DataInfo(object_storage_urls=urls, dataset=dataset), metadata=metadata, timeout=30)

    def assert_code(self, call, code, *fragments):
        with self.assertRaises(grpc.RpcError) as caught:
            call()
        self.assertEqual(caught.exception.code(), code, caught.exception.details())
        for fragment in fragments:
            self.assertIn(fragment, caught.exception.details())

    def test_prepare_then_process(self):
        urls = ["a", "s3://bucket/k.csv", "file://" + os.path.join(self.root.name, "bucket/big.bin")]
        keys = ["a", "bucket/k.csv", "bucket/big.bin"]
        manifest = self.prepare(urls, metadata=[("gps-idempotency-key", "py-run/prepare/1")])
        self.assertEqual(manifest.dataset, "ds")
        self.assertEqual([o.url for o in manifest.objects], urls)
        self.assertEqual([o.size_bytes for o in manifest.objects], [len(self.objects[k]) for k in keys])
        self.assertEqual([o.sha256 for o in manifest.objects],
                         [hashlib.sha256(self.objects[k]).hexdigest() for k in keys])
        self.assertEqual(manifest.object_count, 3)
        self.assertEqual(manifest.total_bytes, sum(len(self.objects[k]) for k in keys))

        response = self.stub_b.Process(manifest, timeout=30)
        digests = sorted(hashlib.sha256(self.objects[k]).digest() for k in keys)
        self.assertEqual(response.dataset_digest, hashlib.sha256(b"".join(digests)).hexdigest())
        self.assertEqual((response.dataset, response.object_count, response.total_bytes),
                         ("ds", 3, manifest.total_bytes))
        self.assertIn("py-run/prepare/1", self.a.log())

    def test_missing_object_is_not_found(self):
        self.assert_code(lambda: self.prepare(["a", "s3://bucket/missing"]), grpc.StatusCode.NOT_FOUND,
                         "s3://bucket/missing")

    def test_escapes_and_schemes_are_invalid_argument(self):
        for url in ["../etc/passwd", "s3://bucket/../../x", "file:///etc/passwd", "https://example.com/a"]:
            with self.subTest(url=url):
                self.assert_code(lambda: self.prepare([url]), grpc.StatusCode.INVALID_ARGUMENT, url)

    def test_oversized_request_is_resource_exhausted(self):
        self.assert_code(lambda: self.prepare(["a"] * 3000), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(self.prepare(["a"]).object_count, 1)  # the server still serves

    def test_b_rejects_an_inconsistent_manifest(self):
        manifest = self.prepare(["a"])
        manifest.total_bytes += 1
        self.assert_code(lambda: self.stub_b.Process(manifest, timeout=30), grpc.StatusCode.INVALID_ARGUMENT,
                         "manifest.total_bytes")

    def test_health(self):
        for server, service in [(self.a, "gps.v1.A"), (self.b, "gps.v1.B")]:
            stub = health_pb2_grpc.HealthStub(server.channel)
            for name in ["", service]:
                status = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=30).status
                self.assertEqual(status, health_pb2.HealthCheckResponse.SERVING)
            self.assert_code(lambda: stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=30),
                             grpc.StatusCode.NOT_FOUND)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gps", required=True)
    options, rest = parser.parse_known_args()
    GPS = os.path.abspath(options.gps)
    unittest.main(argv=[sys.argv[0], "-v", *rest])
