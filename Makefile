# natter — build, run, test.
#   make          build build/natter (optimised) and the bench anchor
#   make run      install what is missing, build, start on 127.0.0.1:8080 with ./data
#   make test     install what is missing, build with ASan+UBSan, run every test
#   make CC=clang ...   the same with clang

CC      ?= cc
BUILD   ?= build
PKGS    := libh2o-evloop jansson libargon2 sqlite3 openssl rdkafka
CSTD    := -std=c17 -D_GNU_SOURCE -DH2O_USE_LIBUV=0
WARN    := -Wall -Wextra -Werror
CFLAGS  ?= -O2 -g
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LIBS    := $(PKG_LIBS) -lwslay -lz -lpthread -lm
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRC      := $(shell find src -name '*.c' | sort)
LIB_SRC  := $(filter-out src/main.c,$(SRC))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))

# $(call objs,DIR,SOURCES)
objs = $(patsubst %.c,$(1)/obj/%.o,$(2))

REL := $(BUILD)
SAN_DIR := $(BUILD)/asan

.PHONY: all run test deps unit blackbox blackbox-kafka fuzz clean bench-wrk
all: $(REL)/natter $(REL)/noop-server

# --- release build ---------------------------------------------------------
$(REL)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(CSTD) $(WARN) $(CFLAGS) $(PKG_CFLAGS) -Isrc -MMD -MP -c $< -o $@

$(REL)/natter: $(call objs,$(REL),$(SRC))
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

$(REL)/noop-server: bench/noop/noop_server.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIBS)

# --- sanitizer build, used by the tests -------------------------------------
$(SAN_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "CC [asan] $<"
	@$(CC) $(CSTD) $(WARN) -O1 -g $(SAN) $(PKG_CFLAGS) -Isrc -MMD -MP -c $< -o $@

$(SAN_DIR)/natter: $(call objs,$(SAN_DIR),$(SRC))
	$(CC) $(SAN) -o $@ $^ $(LIBS)

$(SAN_DIR)/tests/%: tests/unit/%.c $(call objs,$(SAN_DIR),$(LIB_SRC))
	@mkdir -p $(dir $@)
	@echo "LD [asan] $@"
	@$(CC) $(CSTD) $(WARN) -O1 -g $(SAN) $(PKG_CFLAGS) -Isrc -MMD -MP -o $@ $(filter %.c,$<) $(filter %.o,$^) $(LIBS) -lcmocka

UNIT_BINS := $(patsubst tests/unit/%.c,$(SAN_DIR)/tests/%,$(UNIT_SRC))

# --- fuzz targets (libFuzzer needs clang), run briefly by make test ----------
FUZZ_SECONDS ?= 10
FUZZ_SRC := src/ingest/router.c src/core/util.c src/core/token.c
$(BUILD)/fuzz/fuzz_request: tests/fuzz/fuzz_request.c $(FUZZ_SRC)
	@mkdir -p $(dir $@)
	clang $(CSTD) $(WARN) -g -O1 -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) -Isrc -o $@ $^ $(LIBS)

# --- commands ---------------------------------------------------------------
deps:
	@scripts/deps

run: deps $(REL)/natter
	$(REL)/natter --data-dir ./data

unit: $(UNIT_BINS)
	@scripts/run-unit $(UNIT_BINS)

fuzz: $(BUILD)/fuzz/fuzz_request
	@mkdir -p $(BUILD)/fuzz/corpus
	@$(BUILD)/fuzz/fuzz_request -max_total_time=$(FUZZ_SECONDS) $(BUILD)/fuzz/corpus tests/fuzz/corpus \
		>$(BUILD)/fuzz/log 2>&1; rc=$$?; tail -n 1 $(BUILD)/fuzz/log; exit $$rc

blackbox: $(SAN_DIR)/natter
	NATTER_BIN=$(SAN_DIR)/natter python3 -m pytest -q tests/blackbox

# the same suite on --log kafka, against a real broker started and stopped by the script
blackbox-kafka: $(SAN_DIR)/natter
	NATTER_BIN=$(SAN_DIR)/natter scripts/test-kafka

test: deps
	$(MAKE) --no-print-directory all $(SAN_DIR)/natter $(UNIT_BINS) $(BUILD)/fuzz/fuzz_request
	$(MAKE) --no-print-directory unit fuzz blackbox blackbox-kafka

# wrk against the no-op anchor, natter on its embedded default, and natter on
# --log kafka (a real broker started here), in one run; writes bench/results/
bench-wrk: all
	@addr=$$(scripts/engine start kafka --name natter-bench --port 39092 | tail -n 1) && \
	KAFKA_BROKERS=$$addr scripts/bench-wrk; rc=$$?; \
	scripts/engine stop kafka --name natter-bench >/dev/null; exit $$rc

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
