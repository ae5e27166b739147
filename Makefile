# foobar-ref: `make demo` and `make test` set up everything they need on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STATE  ?= .foobar-ref

.PHONY: setup mariadb test-tools demo up down status test lint bench bench-hops bench-dns bench-firewall bench-monitoring bench-tools clean

setup: $(STAMP) mariadb

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The MariaDB server binary; the project starts its own instances in $(STATE), never the system one.
mariadb:
	@if command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing mariadb-server (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null; \
	else \
		echo "MariaDB server is missing. Install it with:  sudo apt-get install -y mariadb-server"; exit 1; \
	fi

# What the tests use beside MariaDB, from Debian's packages: Prometheus's promtool and server (the
# monitor's rules and federation are checked against the real thing) and Chromium (the dashboard is
# tested in a real browser).  Without recommends, so no system node exporter takes port 9100; no
# service is started (the tests start their own Prometheus on its own address).
TEST_TOOLS := promtool:prometheus chromium:chromium
test-tools:
	@missing=""; for pair in $(TEST_TOOLS); do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing$$missing (Debian packages)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "missing for the tests:$$missing. Install with:  sudo apt-get install -y --no-install-recommends$$missing"; exit 1; \
	fi

demo: setup
	$(BIN)/foobar-ref up --detach --state $(STATE)
	$(BIN)/foobar-ref get -v --state $(STATE) https://www.foobar.com/
	@echo
	@echo "The site is up at https://www.foobar.com/ (resolved by the project's DNS at 127.0.3.1)."
	@echo "  one more request:  $(BIN)/foobar-ref get -v https://www.foobar.com/"
	@echo "  what runs:         $(BIN)/foobar-ref status"
	@echo "  stop it all:       make down   (or: $(BIN)/foobar-ref down)"

up: setup
	$(BIN)/foobar-ref up --detach --state $(STATE)

down:
	$(BIN)/foobar-ref down --state $(STATE)

status:
	$(BIN)/foobar-ref status --state $(STATE)

lint: $(STAMP)
	$(BIN)/ruff check foobar_ref tests benchmarks examples
	$(BIN)/ruff format --check foobar_ref tests benchmarks examples
	$(BIN)/mypy foobar_ref

test: setup test-tools lint
	$(BIN)/pytest

# Benchmarks run one after another (never two at once: two cores would measure each other).
bench: bench-hops bench-dns bench-firewall bench-monitoring

bench-hops: setup
	flock /tmp/foobar-bench.lock $(BIN)/python benchmarks/hops.py

bench-dns: setup
	flock /tmp/foobar-bench.lock $(BIN)/python benchmarks/dns.py

bench-firewall: setup
	flock /tmp/foobar-bench.lock $(BIN)/python benchmarks/firewall.py

bench-monitoring: setup
	flock /tmp/foobar-bench.lock $(BIN)/python benchmarks/monitoring.py

# The real tools the benchmarks compare against, from Debian's packages; their own services are
# left stopped (the benchmarks start them on their own addresses).
bench-tools:
	@if [ "$$(id -u)" != 0 ]; then echo "run as root: apt-get install -y dnsperf unbound haproxy wrk"; exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dnsperf unbound haproxy wrk >/dev/null
	-systemctl disable --now unbound haproxy 2>/dev/null

clean: down
	rm -rf $(STATE)
