# GPS — every target installs the Debian packages it needs (only the missing ones).
SHELL := /bin/bash
.DEFAULT_GOAL := build

SWIFT        ?= swift
DATA_DIR     ?= data
BUILD_DEPS   := liblz4-dev libjemalloc-dev libsqlite3-dev pkg-config
PROTO_DEPS   := protobuf-compiler
BENCH_DEPS   := nghttp2-client postgresql
# openssl makes the self-signed certificate of the TLS test; chromium and its driver run the web
# UI's browser tests (Selenium, from the venv); postgresql's initdb and pg_ctl start the servers
# of the PostgreSQL store's tests (each its own, in a temporary directory, on a free port).
TEST_DEPS    := openssl chromium chromium-driver postgresql
PLUGINS_DIR  := tools/protoc-plugins
EXAMPLE      := Examples/inventory-worker
EXAMPLE_GENERATED := $(EXAMPLE)/Sources/InventoryWorker/Generated
PLUGINS_BIN  := $(PLUGINS_DIR)/.build/release
PROTO_FILES  := $(shell find protos -name '*.proto' | sort)
GENERATED    := Sources/RPC/Generated
# Services A and B (the reference flow's services) are compiled into Services.
SERVICES_PROTOS := protos/gps/v1/a.proto protos/gps/v1/b.proto protos/gps/v1/common.proto
SERVICES_GENERATED := Sources/Services/Generated
# The log's records and the control API, shared by the worker SDK and the server (GPSModel).
MODEL_PROTOS := protos/gps/v1/events.proto protos/gps/v1/queue.proto
MODEL_GENERATED := Sources/GPSModel/Generated
# The control API's descriptors, embedded in Web for its OpenAPI schemas.
CONTROL_PROTOS := protos/gps/v1/queue.proto
RPC_PROTOS   := $(filter-out $(MODEL_PROTOS) $(SERVICES_PROTOS),$(PROTO_FILES))
REFERENCE_GENERATED := Sources/ReferenceFlow/Generated
WEB_GENERATED := Sources/Web/Generated
DESCRIPTOR_SET  := protos/gps.desc
VENV         := .build-venv
PYTHON       ?= python3
LINT_PATHS   := Package.swift $(shell find Sources Tests Benchmarks Examples Fuzz -name '*.swift' -not -path '*/Generated/*' -not -path '*/.build*' | sort)

.PHONY: install build release test test-python lint format proto clean run bench soak fuzz deps venv

deps:
	@scripts/ensure-packages.sh $(BUILD_DEPS)

## install: system packages, Swift dependencies and the Python venv used by the interop tests.
install: deps venv
	$(SWIFT) package resolve

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

## test: builds everything and runs every test (Swift, then the independent Python gRPC client).
test: deps venv
	@scripts/ensure-packages.sh $(TEST_DEPS)
	@# The example worker is built by this build too (a target without package access: GPS's
	@# public API only), so no dependency is built twice; its own manifest is checked to agree.
	$(SWIFT) build --build-tests
	scripts/check-example-manifest.py $(SWIFT)
	@# At most 8 tests at once: many of them run several processes, and two cores starved by all of
	@# them at once turn timing into failures (a lock held 10 s, a deadline passed).
	SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH=8 $(SWIFT) test --skip-build --parallel
	$(MAKE) --no-print-directory test-python

test-python: venv
	@scripts/ensure-packages.sh $(TEST_DEPS)
	@# The browser suite runs the example worker (a no-op when `make test` just built it).
	$(SWIFT) build --product InventoryWorker
	$(VENV)/bin/python Tests/python/test_services.py --gps "$$($(SWIFT) build --show-bin-path)/gps"
	@# The web UI in headless chromium; screenshots of each page in .build-artifacts/screenshots.
	$(VENV)/bin/python Tests/python/test_web.py --gps "$$($(SWIFT) build --show-bin-path)/gps" \
	  --artifacts "$(CURDIR)/.build-artifacts/screenshots"

# Python venv for the interop tests; health.proto becomes top-level modules because a `grpc`
# package of ours would shadow grpcio's.
venv: $(VENV)/.ready
$(VENV)/.ready: Tests/python/requirements.txt $(PROTO_FILES)
	@scripts/ensure-packages.sh $(BUILD_DEPS)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r Tests/python/requirements.txt
	rm -rf $(VENV)/stubs && mkdir -p $(VENV)/stubs
	$(VENV)/bin/python -m grpc_tools.protoc -Iprotos --python_out=$(VENV)/stubs --grpc_python_out=$(VENV)/stubs $(filter protos/gps/%,$(PROTO_FILES))
	$(VENV)/bin/python -m grpc_tools.protoc -Iprotos/grpc/health/v1 --python_out=$(VENV)/stubs --grpc_python_out=$(VENV)/stubs health.proto
	touch $@

$(VENV)/.dbos: $(VENV)/.ready
	$(VENV)/bin/pip install -q dbos==3.4.0
	touch $@

## soak: the kill -9 durability test with many more kills than `make test` runs.
soak: deps
	$(SWIFT) build --build-tests
	GPS_CRASH_KILLS=$${GPS_CRASH_KILLS:-500} $(SWIFT) test --skip-build --filter CrashTests

## fuzz: coverage-guided fuzzing (libFuzzer, swiftc -sanitize=fuzzer) of the log's batch decoder, the
## reducer, JSON parameter validation, deployment registration and the web server's request parsing:
## each target FUZZ_SECONDS (default 600) from the committed seeds (Fuzz/corpus/TARGET), which
## stay as they are; what the fuzzer adds goes to .build-fuzz/corpus, crashes to .build-fuzz/crashes
## (replay one with `gps-fuzz TARGET FILE` from a plain build).
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= batch reducer parameters registration request
fuzz: deps
	$(SWIFT) build -c release --scratch-path $(CURDIR)/.build-fuzz --product GPSFuzz \
	  -Xswiftc -sanitize=fuzzer -Xswiftc -DFUZZING
	@mkdir -p .build-fuzz/crashes .build-fuzz/logs
	@set -o pipefail; for target in $(FUZZ_TARGETS); do \
	  mkdir -p .build-fuzz/corpus/$$target; \
	  echo "== $$target: $(FUZZ_SECONDS) s (whole output in .build-fuzz/logs/$$target.log)"; \
	  SWIFT_BACKTRACE=enable=no GPS_FUZZ_TARGET=$$target "$$($(SWIFT) build -c release --scratch-path $(CURDIR)/.build-fuzz --show-bin-path)/GPSFuzz" \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=4096 -print_final_stats=1 \
	    -artifact_prefix=.build-fuzz/crashes/$$target- .build-fuzz/corpus/$$target Fuzz/corpus/$$target \
	    > .build-fuzz/logs/$$target.log 2>&1; status=$$?; \
	  grep -E 'INITED|stat::|==[0-9]+==|SUMMARY|^Done ' .build-fuzz/logs/$$target.log; \
	  grep -E 'cov: ' .build-fuzz/logs/$$target.log | tail -1; \
	  test $$status = 0 || exit 1; \
	done

lint:
	$(SWIFT) format lint --strict --parallel $(LINT_PATHS)

format:
	$(SWIFT) format --in-place --parallel $(LINT_PATHS)

## proto: regenerates Sources/RPC/Generated from protos/ (plugins built from the pinned packages).
proto:
	@scripts/ensure-packages.sh $(PROTO_DEPS)
	cd $(PLUGINS_DIR) && $(SWIFT) build -c release --product protoc-gen-swift
	cd $(PLUGINS_DIR) && $(SWIFT) build -c release --product protoc-gen-grpc-swift-2
	rm -rf $(GENERATED) && mkdir -p $(GENERATED)
	protoc -Iprotos \
	  --plugin=protoc-gen-swift=$(PLUGINS_BIN)/protoc-gen-swift \
	  --plugin=protoc-gen-grpc-swift=$(PLUGINS_BIN)/protoc-gen-grpc-swift-2 \
	  --swift_opt=Visibility=Public,FileNaming=PathToUnderscores,UseAccessLevelOnImports=true \
	  --swift_out=$(GENERATED) \
	  --grpc-swift_opt=Visibility=Public,FileNaming=PathToUnderscores,UseAccessLevelOnImports=true \
	  --grpc-swift_out=$(GENERATED) \
	  $(RPC_PROTOS)
	rm -rf $(SERVICES_GENERATED) && mkdir -p $(SERVICES_GENERATED)
	protoc -Iprotos \
	  --plugin=protoc-gen-swift=$(PLUGINS_BIN)/protoc-gen-swift \
	  --plugin=protoc-gen-grpc-swift=$(PLUGINS_BIN)/protoc-gen-grpc-swift-2 \
	  --swift_opt=Visibility=Public,FileNaming=PathToUnderscores,UseAccessLevelOnImports=true \
	  --swift_out=$(SERVICES_GENERATED) \
	  --grpc-swift_opt=Visibility=Public,FileNaming=PathToUnderscores,UseAccessLevelOnImports=true \
	  --grpc-swift_out=$(SERVICES_GENERATED) \
	  $(SERVICES_PROTOS)
	rm -rf $(MODEL_GENERATED) && mkdir -p $(MODEL_GENERATED)
	protoc -Iprotos \
	  --plugin=protoc-gen-swift=$(PLUGINS_BIN)/protoc-gen-swift \
	  --plugin=protoc-gen-grpc-swift=$(PLUGINS_BIN)/protoc-gen-grpc-swift-2 \
	  --swift_opt=Visibility=Public,FileNaming=PathToUnderscores,UseAccessLevelOnImports=true \
	  --swift_out=$(MODEL_GENERATED) \
	  --grpc-swift_opt=Visibility=Public,FileNaming=PathToUnderscores,UseAccessLevelOnImports=true \
	  --grpc-swift_out=$(MODEL_GENERATED) \
	  $(MODEL_PROTOS)
	# The descriptors of the reference flow's types, which it registers with the server (ReferenceFlow),
	# and of every proto (protos/gps.desc, read by the validator's tests).
	mkdir -p $(REFERENCE_GENERATED)
	protoc -Iprotos --include_imports --descriptor_set_out=$(DESCRIPTOR_SET).services $(SERVICES_PROTOS)
	scripts/embed-descriptors.sh $(DESCRIPTOR_SET).services > $(REFERENCE_GENERATED)/DescriptorSet.swift
	rm -f $(DESCRIPTOR_SET).services
	protoc -Iprotos --include_imports --descriptor_set_out=$(DESCRIPTOR_SET) $(PROTO_FILES)
	# The control API's messages, whose JSON the web API answers with: its OpenAPI document's schemas.
	mkdir -p $(WEB_GENERATED)
	protoc -Iprotos --include_imports --descriptor_set_out=$(DESCRIPTOR_SET).control $(CONTROL_PROTOS)
	scripts/embed-descriptors.sh $(DESCRIPTOR_SET).control > $(WEB_GENERATED)/DescriptorSet.swift
	rm -f $(DESCRIPTOR_SET).control
	# The example worker's own protos, messages, client and descriptors (internal to its package).
	rm -rf $(EXAMPLE_GENERATED) && mkdir -p $(EXAMPLE_GENERATED)
	protoc -I$(EXAMPLE)/protos \
	  --plugin=protoc-gen-swift=$(PLUGINS_BIN)/protoc-gen-swift \
	  --plugin=protoc-gen-grpc-swift=$(PLUGINS_BIN)/protoc-gen-grpc-swift-2 \
	  --swift_opt=Visibility=Internal,FileNaming=PathToUnderscores --swift_out=$(EXAMPLE_GENERATED) \
	  --grpc-swift_opt=Visibility=Internal,FileNaming=PathToUnderscores --grpc-swift_out=$(EXAMPLE_GENERATED) \
	  $(EXAMPLE)/protos/inventory/v1/inventory.proto
	protoc -I$(EXAMPLE)/protos --include_imports --descriptor_set_out=$(EXAMPLE)/protos/inventory.desc \
	  $(EXAMPLE)/protos/inventory/v1/inventory.proto
	scripts/embed-descriptors.sh $(EXAMPLE)/protos/inventory.desc > $(EXAMPLE_GENERATED)/DescriptorSet.swift
	rm -f $(EXAMPLE)/protos/inventory.desc

clean:
	rm -rf .build $(VENV) $(PLUGINS_DIR)/.build
	rm -rf $(DATA_DIR)/log $(DATA_DIR)/snapshots $(DATA_DIR)/LOCK $(DATA_DIR)/*.addr

## run: starts A, B and the server with its scheduler on data/, runs the snippet's deployment with --watch, shows its history, stops all.
run: build
	scripts/run-demo.sh "$$($(SWIFT) build --show-bin-path)/gps"

## bench: release build; the event log against the raw write+fdatasync limit (gps-bench), then
## h2load against A/Prepare on a tiny object. The store suite runs DBOS 3.4 beside GPS on the same
## PostgreSQL (scripts/bench-dbos.py, in the venv with dbos added).
bench: release $(VENV)/.dbos
	@scripts/ensure-packages.sh $(BENCH_DEPS)
	@# One process per suite: a suite's heap (the queue suite holds 1,000,000 runs) must not slow the next.
	for suite in log queue e2e metrics control web store; do \
	  "$$($(SWIFT) build -c release --show-bin-path)/gps-bench" --dir "$(CURDIR)/.build-bench" --only $$suite || exit 1; \
	done
	scripts/bench-h2load.sh "$$($(SWIFT) build -c release --show-bin-path)/gps"
