# GradAccum: the two quick-start commands are `make demo` and `make test`.
# Each installs the Debian packages it needs when they are missing.

SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PACKAGES := libjemalloc-dev libopenblas-dev pkg-config librsvg2-bin libopenmpi-dev openmpi-bin

.PHONY: deps demo test build release bench bench-instructions bench-suites compare-pytorch compare-sequences compare-throughput sanitize docs format clean

## Install jemalloc, OpenBLAS and Open MPI (Debian packages) when pkg-config does not find
## them, and rsvg-convert (the chart test renders SVG to PNG with it).
deps:
	@if ! pkg-config --exists jemalloc openblas ompi-c 2>/dev/null || ! command -v rsvg-convert >/dev/null || ! command -v mpirun >/dev/null; then \
	  echo "Installing $(PACKAGES)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PACKAGES); \
	fi

## Reproduce the article's experiment: batch 40 against 10 × 4 accumulation.
demo: deps
	$(SWIFT) run -c release gradaccum demo

## Run every test, and build the example package that depends on GradAccum.
test: deps
	$(SWIFT) build
	$(SWIFT) test --parallel
	$(SWIFT) build --package-path Examples/DesignExample

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

## Training throughput and matmul against OpenBLAS (figures in docs/benchmarks.md).
bench: deps
	cd Benchmarks && $(SWIFT) package --allow-writing-to-package-directory benchmark --format markdown

## Instructions of one training step per benchmark model (callgrind; needs valgrind): a
## regression guard independent of the machine's noise, kept in docs/benchmarks.md.
bench-instructions: release
	scripts/instruction_counts.sh .build/release/gradaccum

## Compare final weights with PyTorch (needs `pip install torch safetensors`).
compare-pytorch: release
	python3 scripts/pytorch_reference.py .build/release/gradaccum

## Sequence models against PyTorch's reference definitions, under many budgets, and greedy
## generation (needs `pip install torch safetensors`).
compare-sequences: release
	cd scripts && python3 sequence_reference.py ../.build/release/gradaccum

## GradAccum against PyTorch CPU eager, side by side (needs `pip install torch`).
compare-throughput: release
	python3 scripts/throughput_comparison.py --gradaccum .build/release/gradaccum

## The test suite under AddressSanitizer and LeakSanitizer (`swift test --sanitize=address`).
sanitize: deps
	scripts/sanitize.sh

## The library's documentation (DocC), with the guides as articles, in .build/documentation.
docs: deps
	scripts/documentation.sh

format:
	$(SWIFT) format --in-place --recursive Sources Tests Benchmarks/Benchmarks Package.swift

clean:
	rm -rf .build .build-asan .build-fuzz Benchmarks/.build
