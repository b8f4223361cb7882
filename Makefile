# rlaifd — top-level entry points. `make test` is the single test command.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)

.PHONY: all deps configure build test test-gpu demo clean format bench-ingest soak-ingest soak-memory fuzz sanitize reliability bench-train bench-train-cv bench-tokenize

all: build

deps:
	@bash scripts/deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# Every test (unit, integration, end-to-end). GPU tests skip themselves without CUDA.
# Then every libFuzzer target for TEST_FUZZ_SECONDS (clang build in build-fuzz/;
# any crash, leak or sanitizer report fails): the fixed fuzzing budget of CI,
# with a fixed libFuzzer seed so that CI runs explore the same inputs.
TEST_FUZZ_SECONDS ?= 10
test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900
	@FUZZ_SECONDS=$(TEST_FUZZ_SECONDS) FUZZ_SEED=1 bash scripts/fuzz.sh

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

# Ingest throughput on one core over a generated 1 GiB openai-chat log (bench/RESULTS.md).
bench-ingest: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target rlaifd rlaif-ingest gen_chat_log
	@BIN=$(BUILD_DIR)/bin bash bench/ingest.sh

# The crash+rotation e2e test, longer (KILLS=N kills at least, default 200;
# DURATION_S=S keeps going until S seconds have passed), then the measured
# copytruncate loss window (CT_ROTATIONS, CT_RATE lines/s); docs/OPERATIONS.md.
soak-ingest: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target rlaifd rlaif-sim
	@RLAIF_CRASH_KILLS=$${KILLS:-200} RLAIF_CRASH_DURATION_S=$${DURATION_S:-0} \
	  python3 tests/e2e/test_ingest_crash_rotation.py --bin $(BUILD_DIR)/bin --source .
	@RLAIF_CT_ROTATIONS=$${CT_ROTATIONS:-30} RLAIF_CT_RATE=$${CT_RATE:-2000} \
	  python3 tests/e2e/soak_copytruncate_window.py --bin $(BUILD_DIR)/bin --source .

# Memory, descriptors and threads over MINUTES (default 15) of ingest,
# scoring load and a retrain every 40 labels (docs/RELIABILITY.md).
soak-memory: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target rlaifd rlaif-sim
	@RLAIF_SOAK_MINUTES=$${MINUTES:-15} python3 tests/e2e/soak_memory.py --bin $(BUILD_DIR)/bin --source .

# CPU training-step tokens/s, C++ beside PyTorch Python (bench/RESULTS.md).
bench-train: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target rlaif-bench-train
	@bash bench/train.sh --bin $(BUILD_DIR)/bin

# 5-fold cross-validation by prompt of the offline defaults on the AlpacaEval
# and HH dev pairs, outside rlaifd train's 10% holdout (~20 min on 2 cores;
# bench/RESULTS.md, "Residual transformer").
bench-train-cv: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target rlaifd
	@OPENBLAS_NUM_THREADS=1 python3 bench/train_cv.py --bin $(BUILD_DIR)/bin --pairs ../shared/data/alpaca-eval-gpt4-dev.jsonl -- --threads 1
	@OPENBLAS_NUM_THREADS=1 python3 bench/train_cv.py --bin $(BUILD_DIR)/bin --pairs ../shared/data/hh-harmless-dev.jsonl -- --threads 1

# Tokenizer encode throughput on the HH and AlpacaEval pairs: the trained
# byte-level BPE, and a Hugging Face tokenizer.json when TOKENIZER=FILE is
# given (bench/RESULTS.md, "Tokenizer encode throughput").
bench-tokenize: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target rlaif-bench-tokenize
	@for f in ../shared/data/hh-harmless-dev.jsonl ../shared/data/alpaca-eval-gpt4-dev.jsonl; do \
	  $(BUILD_DIR)/bin/rlaif-bench-tokenize --pairs $$f $(if $(TOKENIZER),--tokenizer $(TOKENIZER)) || exit 1; done

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) demo-data build-fuzz build-asan build-tsan build-reliability
