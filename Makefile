# rlaifd — top-level entry points. `make test` is the single test command.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)

.PHONY: all deps configure build test test-gpu demo clean format bench-train

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

# rlaif-sim + rlaifd on the bundled sample logs with configs/quickstart.json.
demo: build
	@bash scripts/demo.sh

# CPU training-step tokens/s, C++ beside PyTorch Python (bench/RESULTS.md).
bench-train: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target rlaif-bench-train
	@bash bench/train.sh --bin $(BUILD_DIR)/bin

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) demo-data
