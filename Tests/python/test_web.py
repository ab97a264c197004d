"""The web UI in a real browser: Debian's chromium, driven by Selenium through chromium-driver.

Run by `make test` (which installs chromium, chromium-driver and selenium when missing):
    .build-venv/bin/python Tests/python/test_web.py --gps .build/debug/gps [--artifacts DIR]

Screenshots of every page it visits are saved in the artifacts directory.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

GPS = None
ARTIFACTS = None
WORKER = None


def start(*args):
    """`gps ARGS`, once it printed `listening on` (and, for a server, `web UI on`)."""
    out = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen([GPS, *args], stdout=out, stderr=subprocess.STDOUT, text=True)
    wanted = ["listening on "] + (["web UI on "] if args[:2] == ("server", "start") else [])
    deadline = time.monotonic() + 60
    while True:
        out.seek(0)
        lines = out.read().splitlines()
        found = {w: next((l[len(w):].strip() for l in lines if l.startswith(w)), None) for w in wanted}
        if all(found.values()):
            return process, found, out
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gps {' '.join(args)} did not start: {lines}")
        time.sleep(0.02)


def api(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


class WebUITest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.TemporaryDirectory()
        os.makedirs(os.path.join(cls.root.name, "objects"))
        with open(os.path.join(cls.root.name, "objects", "a"), "w") as f:
            f.write("hello")
        # A answers after 3 s: long enough to cancel a run from its page while it runs.
        cls.a, a, _ = start("server", "a", "--port", "0", "--object-root", cls.root.name + "/objects",
                            "--latency", "3s")
        cls.b, b, _ = start("server", "b", "--port", "0")
        cls.server, found, cls.server_out = start(
            "server", "start", "--data-dir", cls.root.name + "/data", "--port", "0", "--http-port", "0",
            "--a", a["listening on "], "--b", b["listening on "])
        cls.base = found["web UI on "]
        # The example worker package serves `inventory/quote`, whose Order has a map and a oneof.
        cls.worker_out = tempfile.TemporaryFile(mode="w+")
        cls.worker = subprocess.Popen([WORKER, "--server", found["listening on "]], stdout=cls.worker_out,
                                      stderr=subprocess.STDOUT, text=True)
        options = webdriver.ChromeOptions()
        for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--window-size=1280,1400"]:
            options.add_argument(argument)
        binary = next((p for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] if os.path.exists(p)), None)
        if binary:
            options.binary_location = binary
        driver = next((p for p in ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"] if os.path.exists(p)),
                      None)
        cls.browser = webdriver.Chrome(options=options, service=Service(driver) if driver else None)
        cls.browser.set_page_load_timeout(30)

    @classmethod
    def tearDownClass(cls):
        cls.browser.quit()
        codes = []
        for process in (cls.worker, cls.server, cls.a, cls.b):
            process.send_signal(signal.SIGTERM)
            codes.append(process.wait(timeout=60))
        cls.root.cleanup()
        assert codes == [0, 0, 0, 0], f"exit codes {codes}"

    def shot(self, name):
        if ARTIFACTS:
            os.makedirs(ARTIFACTS, exist_ok=True)
            self.browser.save_screenshot(os.path.join(ARTIFACTS, name + ".png"))

    def wait(self, condition, timeout=60, what="the page"):
        return WebDriverWait(self.browser, timeout, poll_frequency=0.05).until(
            lambda _: condition(), message=f"waiting for {what}")

    def by(self, selector):
        return self.browser.find_element(By.CSS_SELECTOR, selector)

    def text(self, selector):
        """An element's text, read in one step: live pages replace their content as events arrive."""
        return self.browser.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null", selector)

    def runs(self):
        return api(self.base, "GET", "/api/runs?limit=1000")[1].get("runs", [])

    def open_form(self):
        self.browser.get(self.base + "/deployments/server-flow/MyPrefectDeployer")
        self.wait(lambda: self.browser.find_elements(By.CSS_SELECTOR, '[data-input="data_info.dataset"]'),
                  what="the run form")

    def test_the_form_runs_the_snippet_to_completed_without_a_reload(self):
        self.open_form()
        self.shot("deployment-form")
        self.by('[data-add="data_info.object_storage_urls"]').click()
        self.wait(lambda: self.browser.find_elements(By.CSS_SELECTOR,
                                                     '[data-input="data_info.object_storage_urls[0]"]'))
        self.by('[data-input="data_info.object_storage_urls[0]"]').send_keys("a")
        self.by('[data-input="data_info.dataset"]').send_keys("b")
        self.by("#submit-run").click()
        self.wait(lambda: "/runs/" in self.browser.current_url, what="the run page")
        marker = self.browser.execute_script("window.__sameDocument = true; return true")
        self.assertTrue(marker)
        self.wait(lambda: self.text("#run-state") == "Completed", what="Completed")
        # The state changed in the same document: no reload happened.
        self.assertTrue(self.browser.execute_script("return window.__sameDocument === true"))
        self.assertIn("dataset_digest", self.text("#result"))
        self.shot("run-completed")
        self.browser.get(self.base + "/runs")
        self.shot("runs")
        self.browser.get(self.base + "/deployments")
        self.shot("deployments")
        self.browser.get(self.base + "/history")
        self.by("#verify").click()
        self.wait(lambda: (self.text("#verify-result") or "").startswith("Intact"), what="verify")
        self.shot("history")

    def test_a_number_for_dataset_in_the_json_tab_is_shown_beside_the_field_and_nothing_is_enqueued(self):
        before = len(self.runs())
        self.open_form()
        self.by("#tab-json").click()
        area = self.by("#json-text")
        area.clear()
        area.send_keys('{"data_info": {"object_storage_urls": ["a"], "dataset": 5}}')
        self.by("#submit-run").click()
        self.wait(lambda: "data_info.dataset" in self.by("#json-error").text, what="the problem")
        self.assertIn("data_info.dataset: expected a string, got the number 5", self.by("#json-error").text)
        # In the form, the same problem is beside its field.
        self.by("#tab-form").click()
        beside = self.by('[data-error-for="data_info.dataset"]')
        self.assertEqual(beside.text, "expected a string, got the number 5")
        self.assertEqual(self.by('[data-input="data_info.dataset"]').get_attribute("value"), "5")
        self.shot("form-error")
        self.assertEqual(len(self.runs()), before)
        self.assertTrue(self.browser.current_url.endswith("/deployments/server-flow/MyPrefectDeployer"))

    def test_switching_between_form_and_json_changes_nothing(self):
        self.open_form()
        self.by("#tab-json").click()
        text = ('{\n  "data_info": {\n    "object_storage_urls": ["x", "y/z.csv", "w"],\n'
                '    "dataset": "d"\n  },\n  "big": 12345678901234567890\n}')
        area = self.by("#json-text")
        area.clear()
        area.send_keys(text)
        self.by("#tab-form").click()
        values = [self.by(f'[data-input="data_info.object_storage_urls[{i}]"]').get_attribute("value")
                  for i in range(3)]
        self.assertEqual(values, ["x", "y/z.csv", "w"])
        self.assertEqual(self.by('[data-input="data_info.dataset"]').get_attribute("value"), "d")
        # Back to JSON without an edit: the very same text.
        self.by("#tab-json").click()
        self.assertEqual(self.by("#json-text").get_attribute("value"), text)
        # An edit in the form: the JSON has it, and everything else as it was (the big number exact).
        self.by("#tab-form").click()
        self.by('[data-remove="data_info.object_storage_urls[1]"]').click()
        self.by('[data-input="data_info.dataset"]').send_keys("2")
        self.by("#tab-json").click()
        edited = self.by("#json-text").get_attribute("value")
        self.assertEqual(json.loads(edited)["data_info"], {"object_storage_urls": ["x", "w"], "dataset": "d2"})
        self.assertIn('"big": "12345678901234567890"', edited)
        for _ in range(3):
            self.by("#tab-form").click()
            self.by("#tab-json").click()
        self.assertEqual(self.by("#json-text").get_attribute("value"), edited)

    def test_a_map_and_a_oneof_are_filled_in_the_form_and_the_run_gets_them_typed(self):
        self.wait(lambda: api(self.base, "GET", "/api/deployments/inventory/quote")[0] == 200, timeout=60,
                  what="the example worker's registration")
        self.browser.get(self.base + "/deployments/inventory/quote")
        self.wait(lambda: self.browser.find_elements(By.CSS_SELECTOR, '[data-input="order.customer"]'),
                  what="the inventory form")
        self.by('[data-input="order.customer"]').send_keys("ada")
        self.by('[data-add="order.items"]').click()
        self.wait(lambda: self.browser.find_elements(By.CSS_SELECTOR, '[data-input="order.items[0].sku"]'))
        self.by('[data-input="order.items[0].sku"]').send_keys("w-1")
        self.by('[data-input="order.items[0].quantity"]').send_keys("3")
        # The map: a key/value row, its key renamed.
        self.by('[data-add="order.notes"]').click()
        self.wait(lambda: self.browser.find_elements(By.CSS_SELECTOR, '[data-map-key="order.notes"]'))
        key = self.by('[data-map-key="order.notes"]')
        key.send_keys(Keys.CONTROL, "a")
        key.send_keys("w-1", Keys.TAB)
        value = "[data-input='order.notes[\"w-1\"]']"
        self.wait(lambda: self.browser.find_elements(By.CSS_SELECTOR, value), what="the renamed entry")
        self.by(value).send_keys("fragile")
        # The oneof: a choice of one member, then that member's own fields.
        Select(self.by('[data-oneof="order.delivery"]')).select_by_value("ship_to")
        self.wait(lambda: self.browser.find_elements(By.CSS_SELECTOR, '[data-input="order.ship_to.city"]'))
        self.by('[data-input="order.ship_to.street"]').send_keys("1 Main St")
        self.by('[data-input="order.ship_to.city"]').send_keys("Oslo")
        self.shot("form-map-oneof")
        self.by("#tab-json").click()
        order = json.loads(self.by("#json-text").get_attribute("value"))["order"]
        self.assertEqual(order["notes"], {"w-1": "fragile"})
        self.assertEqual(order["ship_to"], {"street": "1 Main St", "city": "Oslo"})
        self.assertNotIn("pickup_store", order)
        self.assertEqual(order["items"], [{"sku": "w-1", "quantity": 3}])
        # The other member, chosen in the JSON tab: the form shows it, and the JSON comes back unchanged.
        order.pop("ship_to")
        order["pickup_store"] = "north"
        text = json.dumps({"order": order}, indent=2)
        area = self.by("#json-text")
        area.clear()
        area.send_keys(text)
        self.by("#tab-form").click()
        self.assertEqual(Select(self.by('[data-oneof="order.delivery"]')).first_selected_option.get_attribute("value"),
                         "pickup_store")
        self.assertEqual(self.by('[data-input="order.pickup_store"]').get_attribute("value"), "north")
        self.assertFalse(self.browser.find_elements(By.CSS_SELECTOR, '[data-input="order.ship_to.city"]'))
        self.by("#tab-json").click()
        self.assertEqual(self.by("#json-text").get_attribute("value"), text)
        self.by("#submit-run").click()
        self.wait(lambda: "/runs/" in self.browser.current_url, what="the run page")
        self.wait(lambda: self.text("#run-state") == "Completed", what="Completed")
        # The worker's step read the typed Order: the map and the chosen member are in its quote.
        result = self.text("#result")
        self.assertIn("pickup at north", result)
        self.assertIn("notes w-1: fragile", result)
        self.shot("run-map-oneof")

    def test_a_running_run_is_cancelled_from_its_page(self):
        status, answer = api(self.base, "POST", "/api/runs", {
            "deployment": "server-flow/MyPrefectDeployer",
            "parameters": {"data_info": {"object_storage_urls": ["a"], "dataset": "slow"}}})
        self.assertEqual(status, 201, answer)
        run = answer["run"]["id"]
        self.browser.get(self.base + "/runs/" + run)
        self.wait(lambda: self.text("#run-state") == "Running", what="Running")
        self.by("#cancel-run").click()
        self.wait(lambda: self.text("#run-state") == "Cancelled", what="Cancelled")
        self.shot("run-cancelled")
        self.assertEqual(api(self.base, "GET", "/api/runs/" + run)[1]["run"]["state"], "Cancelled")

    def test_markup_in_a_dataset_and_a_tag_renders_as_text(self):
        script = "<script>window.__xss = 1</script>"
        image = '"><img src=x onerror="window.__xss = 2">'
        status, answer = api(self.base, "POST", "/api/runs", {
            "deployment": "server-flow/MyPrefectDeployer", "tags": [image],
            "parameters": {"data_info": {"object_storage_urls": ["missing"], "dataset": script}}})
        self.assertEqual(status, 201, answer)
        run = answer["run"]["id"]
        for path in ["/runs/" + run, "/runs", "/history"]:
            self.browser.get(self.base + path)
            self.wait(lambda: self.browser.execute_script("return document.readyState") == "complete")
            self.assertIsNone(self.browser.execute_script("return window.__xss"), path)
            self.assertEqual(self.browser.find_elements(By.CSS_SELECTOR, "main img"), [], path)
        self.browser.get(self.base + "/runs/" + run)
        self.assertIn(script, self.by("#parameters").text)
        self.shot("run-escaped")

    def test_schemathesis_finds_no_server_error_and_every_answer_matches_the_openapi_document(self):
        # Every check, in every phase: no 5xx, every answer as documented, invalid requests refused,
        # valid ones accepted (this server's document says each deployment's own parameters, the
        # example worker's Order with its map and oneof among them), undocumented methods 405. Left
        # out: the streams, which follow the log for as long as a client listens.
        # Real runs and a real deployment for the operations on one: a run that completes (and can be
        # retried) and one that runs for a while (and can be cancelled); links from the enqueue and
        # the list lead the stateful phase to them too.
        ids = []
        for dataset in ["for-schemathesis", "for-schemathesis-2"]:
            status, answer = api(self.base, "POST", "/api/runs", {
                "deployment": "server-flow/MyPrefectDeployer",
                "parameters": {"data_info": {"object_storage_urls": ["a"], "dataset": dataset}}})
            self.assertEqual(status, 201, answer)
            ids.append(answer["run"]["id"])
        with open(os.path.join(self.root.name, "schemathesis.toml"), "w") as f:
            f.write('[parameters]\n"path.flow" = "server-flow"\n"path.name" = "MyPrefectDeployer"\n'
                    f'"path.id" = "{ids[0]}"\n\n'
                    '[[operations]]\ninclude-name = "POST /api/runs/{id}/cancel"\n'
                    f'parameters = {{ "path.id" = "{ids[1]}" }}\n')
        schemathesis = os.path.join(os.path.dirname(sys.executable), "schemathesis")
        result = subprocess.run(
            [schemathesis, "run", self.base + "/api/openapi.json", "--url", self.base, "--checks", "all",
             "--phases", "examples,coverage,fuzzing,stateful",
             "--max-examples", "10", "--seed", "20261201", "--exclude-path-regex", "stream$",
             "--request-timeout", "10", "--no-color"],
            capture_output=True, text=True, timeout=600, cwd=self.root.name)  # its cache stays out of the tree
        if ARTIFACTS:
            with open(os.path.join(ARTIFACTS, "schemathesis.txt"), "w") as f:
                f.write(result.stdout + result.stderr)
        self.assertEqual(result.returncode, 0, result.stdout[-6000:] + result.stderr[-2000:])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gps", required=True)
    parser.add_argument("--artifacts", default=None)
    parser.add_argument("--worker", default=None,
        help="the example worker (Examples/inventory-worker; default: InventoryWorker beside --gps)")
    arguments, rest = parser.parse_known_args()
    GPS = arguments.gps
    ARTIFACTS = arguments.artifacts
    WORKER = arguments.worker or os.environ.get("GPS_EXAMPLE_WORKER") or os.path.join(
        os.path.dirname(GPS), "InventoryWorker")
    if not os.access(WORKER, os.X_OK):
        sys.exit(f"no example worker at {WORKER}: build it with swift build --product InventoryWorker")
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)
