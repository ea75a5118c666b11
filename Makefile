# vmsnap: `make demo` and `make test` each do all their set-up on a fresh Debian 12 machine (as root).
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: bench setup demo test test-host test-s3 test-agent test-lab lint check clean

setup:
	bash tests/setup-host.sh

## The whole suite: lint, host tests, the S3 tests, the guest-agent tier, then the lab tests in one VM boot.
test: setup lint test-host test-s3 test-agent test-lab

## Quick: host-only tests (no VM), for iterating.
test-host: setup
	$(PY) -m pytest -m "not lab and not agent and not s3" tests -q

## The S3 tests against a real SeaweedFS on loopback, which the tests start themselves.
test-s3: setup
	$(PY) -m pytest -m s3 tests -q

## The freeze path against a real libvirtd and qemu-guest-agent in a TCG guest (about a minute).
test-agent: setup
	bash tests/agent/run -q

## Lab tests only: boots a real kernel with device-mapper under qemu.
test-lab: setup
	bash tests/lab/run -q

lint: setup
	$(VENV)/bin/ruff check vmsnap tests
	$(VENV)/bin/ruff format --check vmsnap tests
	$(VENV)/bin/mypy
	mandoc -T lint -W warning man/vmsnap.8 man/vmsnap-format.5

## The built-in demo: real LVM in the lab, demo guests in libvirt, a real backup.
demo: setup
	LAB_SCRIPT=tests/lab/demo.sh bash tests/lab/run

## The image engine against dd|zstd and the zstd CLI: prints a table (not a test).
bench: setup
	$(PY) tests/bench/bench.py

clean:
	rm -rf build
