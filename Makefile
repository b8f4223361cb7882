# rlaifd — top-level entry points. `make test` is the single test command.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)

.PHONY: all deps configure build test test-gpu demo clean format fuzz sanitize reliability

all: build

deps:
	@bash scripts/deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# Every test (unit, integration, end-to-end). GPU tests skip themselves without CUDA.
test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900

# Only the tests that need a CUDA device (run on the GPU machine).
test-gpu: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -L gpu

# libFuzzer targets (clang, build-fuzz/), FUZZ_SECONDS each; fails on any crash.
FUZZ_SECONDS ?= 30
fuzz: deps
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh

# ASan+UBSan (build-asan/) and TSan (build-tsan/) builds of the test suite.
sanitize: deps
	@bash scripts/sanitize.sh asan && bash scripts/sanitize.sh tsan

# The reliability suite, long form (docs/RELIABILITY.md): fuzzing (300 s per
# target unless FUZZ_SECONDS is given), both sanitizer suites, bad input, disk full.
reliability: build
	@bash scripts/reliability.sh

# rlaif-sim + rlaifd on the bundled sample logs with configs/quickstart.json.
demo: build
	@bash scripts/demo.sh

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) demo-data build-fuzz build-asan build-tsan build-reliability
