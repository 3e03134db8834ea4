# tidefs: the targets people and CI use.
CARGO ?= cargo
TIDEFS_HOME ?= $(HOME)/.tidefs
MOUNTPOINT ?= $(TIDEFS_HOME)/mnt
META ?= sqlite3://$(TIDEFS_HOME)/meta.db
BIN = $(or $(CARGO_TARGET_DIR),target)/debug/tidefs

.PHONY: build run stop test test-rust test-posix check bench bench-compare

build:
	$(CARGO) build

# Format an embedded volume (SQLite + local directory) if absent, and mount it in the background.
run: build
	@mkdir -p $(TIDEFS_HOME)/data $(MOUNTPOINT)
	@[ -f $(TIDEFS_HOME)/meta.db ] || $(BIN) format $(META) tidefs --bucket $(TIDEFS_HOME)/data
	$(BIN) mount -d $(META) $(MOUNTPOINT) --log $(TIDEFS_HOME)/tidefs.log

stop:
	$(BIN) umount $(MOUNTPOINT)

# Every tier that runs on this machine: unit, property, conformance, VFS, FUSE end-to-end,
# interop with juicefs, crash/remount, and pjdfstest on a real mount.
test: test-rust test-posix

test-rust:
	$(CARGO) test --workspace

test-posix: build
	TIDEFS_BIN=$(BIN) scripts/pjdfstest.sh

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench:
	$(CARGO) bench --bench hot_paths

# Side by side with juicefs on the same backends (root; needs the juicefs binary).
bench-compare:
	$(CARGO) build --release
	python3 scripts/bench_compare.py --tidefs $(or $(CARGO_TARGET_DIR),target)/release/tidefs
