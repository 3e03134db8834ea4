# tidefs: the targets people and CI use.
CARGO ?= cargo
TIDEFS_HOME ?= $(HOME)/.tidefs
MOUNTPOINT ?= $(TIDEFS_HOME)/mnt
META ?= sqlite3://$(TIDEFS_HOME)/meta.db
BIN = $(or $(CARGO_TARGET_DIR),target)/debug/tidefs

.PHONY: build run stop test test-rust test-posix check bench bench-compare services

build:
	$(CARGO) build

# Format an embedded volume (SQLite + local directory) if absent, and mount it in the background.
run: build
	@mkdir -p $(TIDEFS_HOME)/data $(MOUNTPOINT)
	@[ -f $(TIDEFS_HOME)/meta.db ] || $(BIN) format $(META) tidefs --bucket $(TIDEFS_HOME)/data
	$(BIN) mount -d $(META) $(MOUNTPOINT) --log $(TIDEFS_HOME)/tidefs.log

stop:
	$(BIN) umount $(MOUNTPOINT)

# Every tier that runs on this machine: unit, property, conformance (every engine), VFS, FUSE
# end-to-end, many clients on one volume, server faults, interop with juicefs, crash/remount,
# and pjdfstest on a real mount.
test: test-rust test-posix

# Engines: SQLite always; MariaDB and PostgreSQL when `scripts/services.sh start` runs them
# (their URLs are exported only for servers that answer; a URL set by hand but unreachable fails).
test-rust:
	eval "$$(scripts/services.sh env 2>/dev/null)"; $(CARGO) test --workspace

test-posix:
	eval "$$(scripts/services.sh env 2>/dev/null)"; $(CARGO) build && \
	  TIDEFS_BIN=$(BIN) scripts/pjdfstest.sh && \
	  for url in "$$TIDEFS_TEST_MYSQL" "$$TIDEFS_TEST_POSTGRES"; do \
	    [ -z "$$url" ] || PJDFSTEST_META="$$url" TIDEFS_BIN=$(BIN) scripts/pjdfstest.sh || exit 1; \
	  done

# Start real MariaDB and PostgreSQL for the tests (installs them on Debian when missing).
services:
	scripts/services.sh start

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench:
	$(CARGO) bench --bench hot_paths

# Side by side with juicefs on the same backends (root; needs the juicefs binary): SQLite, plus
# MariaDB and PostgreSQL rows when `make services` runs them.
bench-compare:
	$(CARGO) build --release
	eval "$$(scripts/services.sh env 2>/dev/null)"; \
	  python3 scripts/bench_compare.py --tidefs $(or $(CARGO_TARGET_DIR),target)/release/tidefs \
	  --meta "$${BENCH_META:-sqlite$${TIDEFS_TEST_MYSQL:+,mysql}$${TIDEFS_TEST_POSTGRES:+,postgres}}"
