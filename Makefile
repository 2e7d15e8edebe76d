# The two README commands, and the steps they are made of. Everything real lives in meson.
BUILD ?= build
ASAN_BUILD ?= build-asan
MESON_FLAGS ?=

.PHONY: all setup configure build test test-asan test-nocuda format-check demo bench clean

all: build

setup:
	@bash scripts/setup.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_FLAGS)

configure: setup $(BUILD)/build.ninja

build: configure
	meson compile -C $(BUILD)

# Every test suite that runs here (cpu, then multirank under real mpirun), then the closing line
# "N passed, N failed, N skipped" over both.
test: build
	@bash scripts/run_tests.sh $(BUILD) cpu multirank

# The cpu suite again under AddressSanitizer and UBSan (CI runs it as a second build).
test-asan: setup
	@[ -f $(ASAN_BUILD)/build.ninja ] || meson setup $(ASAN_BUILD) -Dbuildtype=debugoptimized \
	    -Db_sanitize=address,undefined -Db_lundef=false $(MESON_FLAGS)
	meson compile -C $(ASAN_BUILD)
	@bash scripts/run_tests.sh $(ASAN_BUILD) cpu

# The cpu suite of a build with CUDA switched off (-Dcuda=disabled): the CPU build must not
# depend on CUDA in any way.
NOCUDA_BUILD ?= build-nocuda
test-nocuda: setup
	@[ -f $(NOCUDA_BUILD)/build.ninja ] || meson setup $(NOCUDA_BUILD) -Dcuda=disabled $(MESON_FLAGS)
	meson compile -C $(NOCUDA_BUILD)
	@bash scripts/run_tests.sh $(NOCUDA_BUILD) cpu

format-check:
	@files=$$(git ls-files '*.c' '*.h' '*.cu'); clang-format --dry-run --Werror $$files && \
	    echo "format: $$(echo $$files | wc -w) files clean"

demo: build
	@bash scripts/demo.sh $(BUILD)

bench: build
	meson test -C $(BUILD) --benchmark --verbose

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(NOCUDA_BUILD)
