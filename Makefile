# disco — build, test and demo.
#
#   make            build/disco (host binary) and build/lib/disco/core.so
#   make test       C core tests, then busted specs; one closing count line
#   make asan       the same tests built with -fsanitize=address,undefined
#   make tsan       C core tests and ZooKeeper specs under ThreadSanitizer
#   make valgrind   the C core tests and one host flow under valgrind (leaks
#                   are errors)
#   make lint       luacheck and clang-format
#   make demo       the main job, end to end, on a local ZooKeeper
#   make bench      benchmarks (figures beside a baseline of the same run)
#   make chaos      the long chaos suite (spec/chaos; make test runs a short one)
#   make deps       check (and as root, install) the Debian packages
#   make install    PREFIX=/usr/local by default
#
# BUILD selects the output directory so that sanitizer builds never mix with
# the normal one.

PREFIX ?= /usr/local
BUILD ?= build
CC ?= cc

# Debian packages the build, the tests and the demo need. luajit2 is
# OpenResty's LuaJIT branch: Debian's nginx Lua module conflicts with the
# plain luajit packages, so disco uses luajit2 from the start.
DEB_PACKAGES := build-essential pkg-config luajit2 libluajit2-5.1-dev \
  libuv1-dev libzookeeper-mt-dev zookeeper default-jre-headless lua-cjson \
  lua-busted lua-check luarocks clang-format valgrind libssl-dev \
  default-jdk-headless libhessian-java clang libclang-rt-14-dev \
  libhttp-parser-dev nginx libnginx-mod-http-lua lua-resty-core \
  lua-resty-lrucache curl python3-kazoo etcd-server etcd-client

# The C sources of the disco.core Lua module. rockspec/disco-scm-1.rockspec
# lists the same files; spec/01-unit/rockspec_spec.lua checks that they agree.
CORE_SRC := core/error.c core/handle.c core/log.c core/loop.c core/queue.c \
  core/queue_probe.c core/signal.c core/timer.c core/fs_event.c \
  core/zk_error.c core/zk_session.c core/zk_request.c core/zk_ephemeral.c \
  core/zk_cache.c core/digest.c core/revcache.c core/sockaddr.c \
  core/hessian2_reader.c core/hessian2_writer.c \
  core/dubbo_frame.c core/dubbo_body.c core/dubbo_server.c core/dubbo_client.c \
  core/http_server.c core/http_header.c core/http_client_response.c \
  core/http_client_request.c core/http_client.c core/pool.c
BINDING_SRC := bindings/dl_core.c bindings/dl_pcall.c bindings/dl_loop.c \
  bindings/dl_log.c bindings/dl_handle.c bindings/dl_timer.c \
  bindings/dl_signal.c bindings/dl_fs_event.c bindings/dl_queue.c \
  bindings/dl_zk.c bindings/dl_zk_ephemeral.c bindings/dl_zk_cache.c \
  bindings/dl_revcache.c bindings/dl_system.c bindings/dl_hessian2.c \
  bindings/dl_dubbo.c bindings/dl_http.c bindings/dl_http_client.c
HOST_SRC := bindings/host.c
CTEST_SRC := $(wildcard core/test/*.c)

LUAJIT_CFLAGS := $(shell pkg-config --cflags luajit 2>/dev/null)
LUAJIT_LIBS := $(shell pkg-config --libs luajit 2>/dev/null)
UV_CFLAGS := $(shell pkg-config --cflags libuv 2>/dev/null)
UV_LIBS := $(shell pkg-config --libs libuv 2>/dev/null)
ZK_LIBS := -lzookeeper_mt

WARNINGS := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
  -Wpointer-arith -Wformat=2
ifeq ($(CI),true)
WARNINGS += -Werror
endif
ifeq ($(WERROR),1)
WARNINGS += -Werror
endif

OPT ?= -O2 -g
SAN_FLAGS :=
ifeq ($(SANITIZE),1)
OPT := -O1 -g -fno-omit-frame-pointer
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined
endif
ifeq ($(SANITIZE),thread)
OPT := -O1 -g -fno-omit-frame-pointer
SAN_FLAGS := -fsanitize=thread
endif

CFLAGS_ALL := -std=c99 -D_GNU_SOURCE -DTHREADED -fPIC $(OPT) $(WARNINGS) \
  $(SAN_FLAGS) -Icore $(UV_CFLAGS) $(CFLAGS)
LDFLAGS_ALL := $(SAN_FLAGS) $(LDFLAGS)
LIBS := $(UV_LIBS) $(ZK_LIBS) -lcrypto -lhttp_parser -lpthread -lm

CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
BINDING_OBJ := $(BINDING_SRC:%.c=$(BUILD)/obj/%.o)
HOST_OBJ := $(HOST_SRC:%.c=$(BUILD)/obj/%.o)
CTEST_OBJ := $(CTEST_SRC:%.c=$(BUILD)/obj/%.o)

MODULE := $(BUILD)/lib/disco/core.so
HOST := $(BUILD)/disco
CTEST := $(BUILD)/test/core_tests
CHAOS_PROXY := $(BUILD)/chaos/fault_proxy

# Where an installed host finds its Lua modules and plugins.
LUA_DIR := $(PREFIX)/share/lua/5.1
CMOD_DIR := $(PREFIX)/lib/lua/5.1
PLUGIN_DIR := $(PREFIX)/share/disco/plugins

.PHONY: all deps test asan valgrind lint demo install clean ctest \
  test-build print-module-sources bench fuzz bench-resty tsan
all: $(HOST) $(MODULE)

$(BUILD)/obj/core/%.o: core/%.c core/disco.h core/internal.h \
  core/zk_internal.h core/dubbo_internal.h core/http_client.h \
  core/http_client_internal.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/obj/core/test/%.o: core/test/%.c core/disco.h core/test/ctest.h \
  core/http_client.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/obj/bindings/%.o: bindings/%.c bindings/dl.h core/disco.h \
  core/http_client.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LUAJIT_CFLAGS) \
	  -DDISCO_LUA_DIR='"$(LUA_DIR)"' -DDISCO_PLUGIN_DIR='"$(PLUGIN_DIR)"' \
	  -c $< -o $@

# The module does not link LuaJIT: the host process (luajit, nginx, busted)
# provides the Lua symbols.
$(MODULE): $(CORE_OBJ) $(BINDING_OBJ)
	@mkdir -p $(@D)
	$(CC) -shared $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

# The host links the same objects statically and preloads disco.core. C
# modules that scripts load (cjson) find the Lua API in libluajit.
$(HOST): $(HOST_OBJ) $(CORE_OBJ) $(BINDING_OBJ)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LUAJIT_LIBS) $(LIBS) -ldl

$(CTEST): $(CTEST_OBJ) $(CORE_OBJ)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

ctest: $(CTEST)

deps:
	@sh .ci/deps.sh $(DEB_PACKAGES)

# Benchmarks print figures beside a baseline measured in the same run; they
# are never part of `make test`.
$(BUILD)/bench/zk_floor: bench/zk_floor.c
	@mkdir -p $(@D)
	$(CC) -std=c99 -D_GNU_SOURCE -DTHREADED -O2 $(WARNINGS) -o $@ $< $(ZK_LIBS) -lpthread

# bench/results/latest.md starts fresh: the benchmarks that publish a table
# (bench/results.lua) append to it.
bench: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/zk_floor
	rm -f bench/results/latest.md
	BUILD=$(BUILD) $(HOST) run bench/zk_cold_discovery.lua $(BENCH_N)
	BUILD=$(BUILD) $(HOST) run bench/zk_notify_latency.lua
	BUILD=$(BUILD) $(HOST) run bench/flows_subscribe.lua
	BUILD=$(BUILD) $(HOST) run bench/metadata_rpc.lua
	BUILD=$(BUILD) $(HOST) run bench/resty_nodes.lua
	BUILD=$(BUILD) $(HOST) run bench/resty_rps.lua
	BUILD=$(BUILD) $(HOST) run bench/cold_discovery.lua
	BUILD=$(BUILD) $(HOST) run bench/change_propagation.lua
	BUILD=$(BUILD) $(HOST) run bench/churn.lua
	BUILD=$(BUILD) $(HOST) run bench/memory.lua
	@echo "results: bench/results/latest.md"

# disco inside Debian's nginx alone: nodes() per call and the owner's idle
# CPU; requests per second through disco's balancer against a static upstream.
bench-resty: deps
	@$(MAKE) --no-print-directory all
	BUILD=$(BUILD) $(HOST) run bench/resty_nodes.lua
	BUILD=$(BUILD) $(HOST) run bench/resty_rps.lua

# test and demo install missing packages first, then build in a fresh make
# so that the pkg-config flags above are read after the install.
test: deps
	@$(MAKE) --no-print-directory test-build
	@BUILD=$(BUILD) SANITIZE=$(SANITIZE) sh spec/run_all.sh

test-build: all $(CTEST) $(CHAOS_PROXY)

# The chaos suite's TCP fault proxy (delay, blackhole, reset between
# disco's clients and ZooKeeper: the kernel here has no netem).
$(CHAOS_PROXY): spec/chaos/fault_proxy.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(LDFLAGS_ALL) $(UV_LIBS)

# The long chaos run: CHAOS_ROUNDS rounds (default 200), at most
# CHAOS_MINUTES minutes (default 30); CHAOS_SEED replays a run. Prints the
# summary (also in $(BUILD)/chaos/report.txt); fails on any violation.
.PHONY: chaos
chaos: deps
	@$(MAKE) --no-print-directory test-build
	@BUILD=$(BUILD) SANITIZE=$(SANITIZE) sh spec/chaos/run.sh

asan:
	$(MAKE) BUILD=build-asan SANITIZE=1 test

# ThreadSanitizer: the C core tests and the ZooKeeper specs (the handoff
# from libzookeeper_mt's threads to the loop), see spec/run_tsan.sh.
tsan: deps
	@$(MAKE) --no-print-directory BUILD=build-tsan SANITIZE=thread test-build
	@BUILD=build-tsan sh spec/run_tsan.sh

VALGRIND := valgrind --error-exitcode=1 --leak-check=full \
  --show-leak-kinds=definite --errors-for-leak-kinds=definite --track-fds=no \
  -q --suppressions=core/test/valgrind.supp

# The C core tests, then one full integration run of the host: a provider
# registers, a consumer fetches its metadata over dubbo and sees it leave
# (spec/valgrind/flow.lua), against a ZooKeeper started outside valgrind and
# bounded to VALGRIND_FLOW_SECONDS.
VALGRIND_FLOW_SECONDS ?= 400
valgrind: deps
	@$(MAKE) --no-print-directory all ctest
	$(VALGRIND) $(CTEST)
	@echo "valgrind: C core tests ran with no memory errors and no leaks"
	$(HOST) run spec/valgrind/with_zookeeper.lua $(VALGRIND_FLOW_SECONDS) \
	  $(VALGRIND) $(HOST) run spec/valgrind/flow.lua
	@echo "valgrind: the host's provider/consumer flow ran with no memory errors and no definite leaks"

lint: deps
	luacheck lua plugins spec examples bench
	clang-format --dry-run -Werror $(CORE_SRC) $(BINDING_SRC) $(HOST_SRC) bench/*.c spec/chaos/*.c \
	  $(CTEST_SRC) core/*.h core/test/*.h bindings/*.h

demo: deps
	@$(MAKE) --no-print-directory all
	$(HOST) run examples/demo.lua

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(CMOD_DIR)/disco \
	  $(DESTDIR)$(LUA_DIR) $(DESTDIR)$(PLUGIN_DIR)
	install -m 755 $(HOST) $(DESTDIR)$(PREFIX)/bin/disco
	install -m 755 $(MODULE) $(DESTDIR)$(CMOD_DIR)/disco/core.so
	cd lua && find disco -name '*.lua' -exec install -D -m 644 {} \
	  $(DESTDIR)$(LUA_DIR)/{} \;
	cd plugins && find . -name '*.lua' -exec install -D -m 644 {} \
	  $(DESTDIR)$(PLUGIN_DIR)/{} \;

# Fuzzing: every fuzz/fuzz_<name>.c is a libFuzzer entry built with clang
# against the core sources (no bindings, no Lua) and run for FUZZ_SECONDS on
# a scratch copy of its seed corpus fuzz/corpus/<name>/. Crashes land in
# $(BUILD)/fuzz/crashes and fail the target.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_FLAGS := -std=c99 -D_GNU_SOURCE -DTHREADED -g -O1 \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Icore $(UV_CFLAGS)

$(BUILD)/fuzz/fuzz_%: fuzz/fuzz_%.c $(CORE_SRC) core/disco.h core/internal.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(CORE_SRC) $(LIBS)

fuzz: deps
	@$(MAKE) --no-print-directory $(FUZZ_BIN)
	@mkdir -p $(BUILD)/fuzz/crashes
	@set -e; for bin in $(FUZZ_BIN); do \
	  name=$${bin##*/fuzz_}; \
	  rm -rf $(BUILD)/fuzz/corpus-$$name; \
	  mkdir -p $(BUILD)/fuzz/corpus-$$name; \
	  if [ -d fuzz/corpus/$$name ]; then \
	    cp fuzz/corpus/$$name/* $(BUILD)/fuzz/corpus-$$name/ 2>/dev/null || true; \
	  fi; \
	  echo "== fuzz $$name for $(FUZZ_SECONDS)s"; \
	  $$bin -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=$(BUILD)/fuzz/crashes/$$name- \
	    $(BUILD)/fuzz/corpus-$$name; \
	done

print-module-sources:
	@echo $(CORE_SRC) $(BINDING_SRC)

clean:
	rm -rf build build-asan build-tsan
