# natter — build, run, test.
#   make          build build/natter (optimised) and the bench anchor
#   make run      install what is missing, build, start on 127.0.0.1:8080 with ./data
#   make test     install what is missing, build with ASan+UBSan, run every test
#   make browser  the web client's tests in headless Chromium (after make test's deps)
#   make CC=clang ...   the same with clang

# `all` stays the default goal, whatever rule comes first below
.DEFAULT_GOAL := all

CC      ?= cc
BUILD   ?= build
PKGS    := jansson libargon2 sqlite3 openssl rdkafka
# what the build needs besides: libyaml's headers, cmake and curl (scripts/build-h2o)
NEEDED  := pkg-config --exists $(PKGS) yaml-0.1 && command -v cmake >/dev/null && command -v curl >/dev/null
CSTD    := -std=c17 -D_GNU_SOURCE -DH2O_USE_LIBUV=0
WARN    := -Wall -Wextra -Werror
CFLAGS  ?= -O2 -g
# On a machine without the build's packages (a fresh Debian) they are
# installed before the lines below ask pkg-config for them: scripts/deps
# --build, as root (otherwise it names what is missing and make stops). A
# dry run (make -n) installs nothing: it only says what is missing.
DRY_RUN := $(findstring n,$(firstword -$(MAKEFLAGS)))
ifneq ($(filter-out clean,$(or $(MAKECMDGOALS),all)),)
ifneq ($(shell { $(NEEDED); } 2>/dev/null && echo ok),ok)
ifneq ($(DRY_RUN),)
$(warning natter: the packages the build needs are missing; make without -n installs them)
else ifneq ($(shell scripts/deps --build >&2 && $(NEEDED) && echo ok),ok)
$(error natter: the packages the build needs are missing)
endif
endif
endif
# h2o: Debian's h2o 2.2.5 source with natter's patches (deps/h2o/), built
# static by scripts/build-h2o (which says why); objects wait for its headers,
# taken as system headers (warnings of natter's own code only)
H2O_DIR := $(BUILD)/h2o
H2O_LIB := $(H2O_DIR)/lib/libh2o-evloop.a
PKG_CFLAGS := -isystem $(H2O_DIR)/include $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LIBS    := $(H2O_LIB) $(PKG_LIBS) -lwslay -lz -lpthread -lm
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRC      := $(shell find src -name '*.c' | sort)
LIB_SRC  := $(filter-out src/main.c,$(SRC))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))

# $(call objs,DIR,SOURCES)
objs = $(patsubst %.c,$(1)/obj/%.o,$(2))

REL := $(BUILD)
SAN_DIR := $(BUILD)/asan

# --- the web client: every file under web/ embedded in the binary -------------
# scripts/embed-web writes one C table of them; it is regenerated when a file
# under web/ changes, appears or goes (a directory's time changes then).
WEB_INPUTS := $(shell find web 2>/dev/null)
WEB_GEN := $(BUILD)/gen/web_assets.c
# $(call web_obj,DIR): the table's object for the build in DIR
web_obj = $(1)/gen/web_assets.o

# $(call compile_rules,DIR,NAME,TAG): how the build in DIR compiles a source
# and the web table, with the compiler $(NAME_CC) and the flags
# $(NAME_CFLAGS) (the builds differ only in those)
define compile_rules
$(1)/obj/%.o: %.c | $$(H2O_LIB)
	@mkdir -p $$(dir $$@)
	@echo "CC$(if $(3), [$(3)]) $$<"
	@$$($(2)_CC) $$(CSTD) $$(WARN) $$($(2)_CFLAGS) $$(PKG_CFLAGS) -Isrc -MMD -MP -c $$< -o $$@
$(call web_obj,$(1)): $$(WEB_GEN)
	@mkdir -p $$(dir $$@)
	@echo "CC$(if $(3), [$(3)]) $$<"
	@$$($(2)_CC) $$(CSTD) $$(WARN) $$($(2)_CFLAGS) -Isrc -MMD -MP -c $$< -o $$@
endef

$(WEB_GEN): scripts/embed-web $(WEB_INPUTS)
	@echo "GEN $@"
	@scripts/embed-web web $@

.PHONY: all run test deps unit blackbox browser engines fuzz clean bench-wrk bench bench-distributed bench-conns \
	bench-login-flood soak profile-locks bench-cluster
all: $(REL)/natter $(REL)/noop-server $(REL)/natter-load

$(H2O_LIB): scripts/build-h2o $(sort $(wildcard deps/h2o/*.patch))
	@echo "H2O $@"
	@CC="$(CC)" scripts/build-h2o $(H2O_DIR)

# --- release build ---------------------------------------------------------
REL_CC = $(CC)
REL_CFLAGS = $(CFLAGS)
$(eval $(call compile_rules,$(REL),REL))

$(REL)/natter: $(call objs,$(REL),$(SRC)) $(call web_obj,$(REL)) $(H2O_LIB)
	$(CC) $(CFLAGS) -o $@ $(filter %.o,$^) $(LIBS)

$(REL)/noop-server: bench/noop/noop_server.c $(H2O_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIBS)

# --- sanitizer build, used by the tests -------------------------------------
SAN_CC = $(CC)
SAN_CFLAGS := -O1 -g $(SAN)
$(eval $(call compile_rules,$(SAN_DIR),SAN,asan))

$(SAN_DIR)/natter: $(call objs,$(SAN_DIR),$(SRC)) $(call web_obj,$(SAN_DIR)) $(H2O_LIB)
	$(CC) $(SAN) -o $@ $(filter %.o,$^) $(LIBS)

$(SAN_DIR)/tests/%: tests/unit/%.c $(call objs,$(SAN_DIR),$(LIB_SRC)) $(call web_obj,$(SAN_DIR)) $(H2O_LIB)
	@mkdir -p $(dir $@)
	@echo "LD [asan] $@"
	@$(CC) $(CSTD) $(WARN) $(SAN_CFLAGS) $(PKG_CFLAGS) -Isrc -MMD -MP -o $@ $(filter %.c,$<) $(filter %.o,$^) $(LIBS) -lcmocka

UNIT_BINS := $(patsubst tests/unit/%.c,$(SAN_DIR)/tests/%,$(UNIT_SRC))

# the same sanitizers built by clang, whose UndefinedBehaviorSanitizer checks
# what gcc's does not (arithmetic on a null pointer, for one): the black-box
# suite's second pass runs on it. It links the same h2o.
CLANG_SAN_DIR := $(BUILD)/clang-asan
CLANG_SAN_CC := clang
CLANG_SAN_CFLAGS := $(SAN_CFLAGS)
$(eval $(call compile_rules,$(CLANG_SAN_DIR),CLANG_SAN,clang-asan))

$(CLANG_SAN_DIR)/natter: $(call objs,$(CLANG_SAN_DIR),$(SRC)) $(call web_obj,$(CLANG_SAN_DIR)) $(H2O_LIB)
	$(CLANG_SAN_CC) $(SAN) -o $@ $(filter %.o,$^) $(LIBS)

# --- natter-load, the open-loop load generator (load/) -----------------------
# load/*.c compile through the same pattern rules as src/; its unit tests
# (tests/unit/test_load_*.c) link the load/ objects instead of src/'s.
LOAD_SRC     := $(sort $(wildcard load/*.c))
LOAD_LIB_SRC := $(filter-out load/main.c,$(LOAD_SRC))
LOAD_UNIT_SRC := $(filter tests/unit/test_load_%,$(UNIT_SRC))
LOAD_UNIT_BINS := $(patsubst tests/unit/%.c,$(SAN_DIR)/tests/%,$(LOAD_UNIT_SRC))

$(REL)/natter-load: $(call objs,$(REL),$(LOAD_SRC))
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

$(SAN_DIR)/natter-load: $(call objs,$(SAN_DIR),$(LOAD_SRC))
	$(CC) $(SAN) -o $@ $^ $(LIBS)

$(LOAD_UNIT_BINS): $(SAN_DIR)/tests/%: tests/unit/%.c $(call objs,$(SAN_DIR),$(LOAD_LIB_SRC))
	@mkdir -p $(dir $@)
	@echo "LD [asan] $@"
	@$(CC) $(CSTD) $(WARN) -O1 -g $(SAN) $(PKG_CFLAGS) -Iload -MMD -MP -o $@ $(filter %.c,$<) $(filter %.o,$^) $(LIBS) -lcmocka

# tests of a client against its real engine (run by scripts/test-engines)
ENGINE_SRC := $(sort $(wildcard tests/engine/test_*.c))
ENGINE_BINS := $(patsubst tests/engine/%.c,$(SAN_DIR)/engine/%,$(ENGINE_SRC))
$(SAN_DIR)/engine/%: tests/engine/%.c $(call objs,$(SAN_DIR),$(LIB_SRC)) $(call web_obj,$(SAN_DIR)) $(H2O_LIB)
	@mkdir -p $(dir $@)
	@echo "LD [asan] $@"
	@$(CC) $(CSTD) $(WARN) $(SAN_CFLAGS) $(PKG_CFLAGS) -Isrc -MMD -MP -o $@ $(filter %.c,$<) $(filter %.o,$^) $(LIBS) -lcmocka

# --- ThreadSanitizer: every unit test of src/, the CQL client, the Kafka log ----
# Built with -fsanitize=thread into $(TSAN_DIR). make unit runs every unit
# test of src/ a second time this way: the ones with threads race them (the
# consumer's store and sync threads against the loop's hand-offs, the id
# issue, the rate limiter and the caches from many threads, the CQL
# client's reader against timeouts on its fake server). The CQL client's
# test links only what it needs. The engine tests of the CQL client and the
# Kafka log run in scripts/test-engines, with tests/tsan/suppressions.txt.
TSAN_DIR := $(BUILD)/tsan
TSAN := -fsanitize=thread -fno-omit-frame-pointer
TSAN_CQL_SRC := src/store/cql/cql_client.c src/store/cql/cql_proto.c src/core/util.c src/core/vec.c
TSAN_KAFKA_SRC := src/log/log_kafka.c src/log/record.c src/core/message.c src/core/jsonw.c src/core/id.c src/core/fault.c \
	src/core/metrics.c src/core/config.c src/core/util.c src/core/emoji.c
TSAN_UNIT_BINS := $(patsubst tests/unit/%.c,$(TSAN_DIR)/tests/%,$(filter-out $(LOAD_UNIT_SRC),$(UNIT_SRC)))
TSAN_ENGINE_BINS := $(TSAN_DIR)/engine/test_cql_client $(TSAN_DIR)/engine/test_cql_cluster \
	$(TSAN_DIR)/engine/test_log_kafka
TSAN_CC = $(CC)
TSAN_CFLAGS := -O1 -g $(TSAN)
$(eval $(call compile_rules,$(TSAN_DIR),TSAN,tsan))

# $(call tsan_link,OUT,TEST_SOURCE): the test and the objects after it
tsan_link = @mkdir -p $(dir $(1)) && echo "LD [tsan] $(1)" && \
	$(CC) $(CSTD) $(WARN) $(TSAN_CFLAGS) $(PKG_CFLAGS) -Isrc -MMD -MP -o $(1) $(2) $(filter %.o,$^) $(LIBS) -lcmocka

$(TSAN_DIR)/tests/test_cql_client: tests/unit/test_cql_client.c $(call objs,$(TSAN_DIR),$(TSAN_CQL_SRC))
	$(call tsan_link,$@,$<)
$(TSAN_DIR)/tests/%: tests/unit/%.c $(call objs,$(TSAN_DIR),$(LIB_SRC)) $(call web_obj,$(TSAN_DIR)) $(H2O_LIB)
	$(call tsan_link,$@,$<)
# built only for the pattern above: kept, not deleted as intermediates
.SECONDARY: $(call objs,$(TSAN_DIR),$(LIB_SRC)) $(call web_obj,$(TSAN_DIR))
$(TSAN_DIR)/engine/test_cql_client $(TSAN_DIR)/engine/test_cql_cluster: $(TSAN_DIR)/engine/%: tests/engine/%.c \
		$(call objs,$(TSAN_DIR),$(TSAN_CQL_SRC))
	$(call tsan_link,$@,$<)
# librdkafka's C11 threads made visible to TSan: see tests/tsan/c11_threads.c
$(TSAN_DIR)/engine/test_log_kafka: tests/engine/test_log_kafka.c \
		$(call objs,$(TSAN_DIR),$(TSAN_KAFKA_SRC) tests/tsan/c11_threads.c)
	$(call tsan_link,$@,$<)

# the listener thread against the sender (load_gather.c), under ThreadSanitizer:
# the second black-box pass runs this one
$(TSAN_DIR)/natter-load: $(call objs,$(TSAN_DIR),$(LOAD_SRC))
	$(CC) $(TSAN_CFLAGS) -o $@ $^ $(LIBS)

.PHONY: tsan-unit
tsan-unit: $(TSAN_UNIT_BINS)
	@TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" scripts/run-unit $(TSAN_UNIT_BINS)
unit: tsan-unit
engines: $(TSAN_ENGINE_BINS)

# --- fuzz targets (libFuzzer needs clang), run briefly by make test ----------
FUZZ_SECONDS ?= 10
FUZZ_FLAGS := $(CSTD) $(WARN) -g -O1 -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) -Isrc
FUZZ_BINS := $(BUILD)/fuzz/fuzz_request $(BUILD)/fuzz/fuzz_cql $(BUILD)/fuzz/fuzz_record $(BUILD)/fuzz/fuzz_load \
	$(BUILD)/fuzz/fuzz_jsonr $(BUILD)/fuzz/fuzz_ws
$(BUILD)/fuzz/fuzz_request: tests/fuzz/fuzz_request.c src/ingest/router.c src/core/util.c src/core/token.c src/core/emoji.c
$(BUILD)/fuzz/fuzz_cql: tests/fuzz/fuzz_cql.c src/store/cql/cql_proto.c src/core/util.c src/core/vec.c
$(BUILD)/fuzz/fuzz_record: tests/fuzz/fuzz_record.c src/log/record.c src/core/message.c src/core/jsonw.c src/core/util.c src/core/id.c src/core/emoji.c
$(BUILD)/fuzz/fuzz_jsonr: tests/fuzz/fuzz_jsonr.c src/core/jsonr.c src/core/util.c
$(BUILD)/fuzz/fuzz_ws: tests/fuzz/fuzz_ws.c src/gateway/ws_codec.c src/core/buf.c src/core/util.c
$(BUILD)/fuzz/fuzz_load: tests/fuzz/fuzz_load.c $(filter-out load/main.c,$(sort $(wildcard load/*.c)))
$(BUILD)/fuzz/fuzz_load: FUZZ_INCLUDES := -Iload
$(FUZZ_BINS): | $(H2O_LIB)
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) $(FUZZ_INCLUDES) -o $@ $^ $(LIBS)

# --- commands ---------------------------------------------------------------
deps:
	@scripts/deps

run: deps $(REL)/natter
	$(REL)/natter --data-dir ./data

unit: $(UNIT_BINS)
	@scripts/run-unit $(UNIT_BINS)

fuzz: $(FUZZ_BINS)
	@for f in request cql record load jsonr ws; do \
		mkdir -p $(BUILD)/fuzz/corpus-$$f; \
		seeds=tests/fuzz/corpus_$$f; [ -d $$seeds ] || seeds=; \
		$(BUILD)/fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) $(BUILD)/fuzz/corpus-$$f $$seeds \
			>$(BUILD)/fuzz/$$f.log 2>&1 || { tail -n 30 $(BUILD)/fuzz/$$f.log; exit 1; }; \
		echo "fuzz_$$f: $$(tail -n 1 $(BUILD)/fuzz/$$f.log)"; \
	done

# the black-box suite on the default event loops (one per CPU), then once
# more on a single loop, on the server clang built (both with ASan+UBSan);
# the Dockerfile's checks read the release binary, which it builds
BLACKBOX_ENV = NATTER_LOAD_BIN=$(SAN_DIR)/natter-load NATTER_RELEASE_BIN=$(REL)/natter
blackbox: $(SAN_DIR)/natter $(CLANG_SAN_DIR)/natter $(SAN_DIR)/natter-load $(TSAN_DIR)/natter-load $(REL)/natter
	$(BLACKBOX_ENV) NATTER_BIN=$(SAN_DIR)/natter python3 -m pytest -q tests/blackbox
	$(BLACKBOX_ENV) NATTER_BIN=$(CLANG_SAN_DIR)/natter NATTER_TEST_ARGS="--threads 1" \
		NATTER_LOAD_BIN=$(TSAN_DIR)/natter-load TSAN_OPTIONS=halt_on_error=1 python3 -m pytest -q tests/blackbox

# the web client in headless Chromium (tests/browser/, node's test runner;
# playwright-core is installed by scripts/deps); screenshots in $(BUILD)/browser
browser: $(SAN_DIR)/natter $(SAN_DIR)/natter-load
	NATTER_BIN=$(SAN_DIR)/natter NATTER_LOAD_BIN=$(SAN_DIR)/natter-load NATTER_BROWSER_OUT=$(BUILD)/browser \
		node --test --test-concurrency=1 --test-timeout=180000 tests/browser/

# the engine tests and the suite on Kafka, Cassandra and both (engines started and stopped by the script)
engines: $(SAN_DIR)/natter $(CLANG_SAN_DIR)/natter $(REL)/natter $(ENGINE_BINS)
	NATTER_BIN=$(SAN_DIR)/natter NATTER_CLANG_BIN=$(CLANG_SAN_DIR)/natter scripts/test-engines

test: deps
	$(MAKE) --no-print-directory all $(SAN_DIR)/natter $(CLANG_SAN_DIR)/natter $(SAN_DIR)/natter-load \
		$(TSAN_DIR)/natter-load $(UNIT_BINS) $(ENGINE_BINS) $(FUZZ_BINS)
	$(MAKE) --no-print-directory unit fuzz blackbox browser engines

# wrk against the no-op anchor, natter on its embedded default, on --log kafka
# and on --log kafka --store cql (a real broker and Cassandra started here),
# in one run; writes bench/results/
BENCH_ENGINE_DATA := build/engines/kafka/data-natter-bench build/engines/cassandra/data-natter-bench

bench-wrk: all
	@rm -rf $(BENCH_ENGINE_DATA) && \
	kafka=$$(scripts/engine start kafka --name natter-bench --port 25092) && \
	cql=$$(scripts/engine start cassandra --name natter-bench --port 25042) && \
	KAFKA_BROKERS=$$kafka CQL_HOSTS=$$cql scripts/bench-wrk; rc=$$?; \
	scripts/engine stop kafka --name natter-bench >/dev/null; \
	scripts/engine stop cassandra --name natter-bench >/dev/null; exit $$rc

# natter-load against the no-op anchor, natter's seed and max scenarios, in
# one run, max in three alternating anchor/natter pairs; writes
# bench/results/ and the bench-load block of README.md
bench: all
	scripts/bench-load

# futex waits per thread and per call site under max-shaped load (perf, as
# root); writes bench/results/<date>-locks.txt, read in docs/architecture.md
profile-locks: all
	scripts/profile-locks

# the same on Kafka + Cassandra (started here on fresh data, stopped after); writes
# bench/results/<date>-distributed-* and the bench-distributed block of README.md
bench-distributed: all
	@rm -rf $(BENCH_ENGINE_DATA) && \
	kafka=$$(scripts/engine start kafka --name natter-bench --port 25092) && \
	cql=$$(scripts/engine start cassandra --name natter-bench --port 25042) && \
	pids=$$(scripts/engine status | awk '$$1 == "kafka/natter-bench" || $$1 == "cassandra/natter-bench" \
		{ sub("/.*", "", $$1); printf "%s%s=%s", s, $$1, $$3; s = " " }') && \
	MODE=distributed KAFKA_BROKERS=$$kafka CQL_HOSTS=$$cql ENGINE_PIDS=$$pids scripts/bench-load; rc=$$?; \
	scripts/engine stop kafka --name natter-bench >/dev/null; \
	scripts/engine stop cassandra --name natter-bench >/dev/null; exit $$rc

# the same on three Kafka brokers and three Cassandra nodes, replication 3
# (scripts/bench-cluster starts and stops them); writes
# bench/results/<date>-cluster-* and the bench-cluster block of README.md
bench-cluster: all
	scripts/bench-cluster

# many WebSockets (scripts/bench-conns): one embedded node filled to its file
# limit, idle and under the rooms stages; 100,000 sockets over six nodes on
# Kafka + Cassandra (started here on fresh data, stopped after); writes
# bench/results/<date>-conns* and the bench-conns block of README.md
BENCH_CONNS_ENGINE_DATA := build/engines/kafka/data-natter-conns build/engines/cassandra/data-natter-conns

bench-conns: all
	@rm -rf $(BENCH_CONNS_ENGINE_DATA) && \
	kafka=$$(scripts/engine start kafka --name natter-conns --port 25192 | tail -n 1) && \
	cql=$$(scripts/engine start cassandra --name natter-conns --port 25142 | tail -n 1) && \
	KAFKA_BROKERS=$$kafka CQL_HOSTS=$$cql scripts/bench-conns; rc=$$?; \
	scripts/engine stop kafka --name natter-conns >/dev/null; \
	scripts/engine stop cassandra --name natter-conns >/dev/null; exit $$rc

# natter-load's seed run with and without a flood of 1,000 wrong-password logins;
# writes bench/results/<date>-login-flood.json and the login-flood block of README.md
bench-login-flood: all
	scripts/bench-login-flood

# ten minutes at most of seed load with reconnecting listeners, slow readers, a
# login flood and malformed frames at once; writes bench/results/<date>-soak.json
# and the soak block of README.md
soak: all
	scripts/soak

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
