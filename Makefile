# migfix — build, test, demo, bench.
#   make            build ./migfix (installs missing Debian packages first, as root)
#   make demo       throwaway PostgreSQL + realistic failed migration, resolved by migfix
#   make test       every test against a real PostgreSQL; ends with "N passed, N failed"
#   make bench      benchmarks (not tests)
#   make stress     kill -9 at every libpq message / spawn of run, deploy, resolve, undo; races
#   make corpus CORPUS="DIR [DIR...]"  differential state harness over Prisma
#                   migrations folders (not a test; tests/corpus/README.md)
#   make asan       build with AddressSanitizer/UBSan into build/asan/migfix
#   make install    PREFIX=/usr/local DESTDIR= : binary, scripts, policies, docs, man page, completions
#   make uninstall  remove what make install put there (same PREFIX and DESTDIR)
#   make matrix     the seed and fixture states against real PostgreSQL 13-18 servers
#   make PGQ_ROOT=DIR  build against a private libpg_query 17 tree (dpkg -x of the trixie packages)
#   make fuzz       libFuzzer targets (ASan/UBSan, clang) over the C parsers and a Lua mutation
#                   fuzzer over SQL files, migfix.lua, .env and URLs; FUZZ_SECONDS= per target

CC      ?= cc
PKGS    := lua5.4 libpq libcrypto libcjson icu-i18n
BUILD   ?= build
BIN     ?= migfix
CFLAGS  ?= -O2 -g
# libpg_query 17 (PostgreSQL 17's parser): the system's by default; PGQ_ROOT=DIR
# builds against a private tree instead (e.g. `dpkg -x` of the trixie packages:
# DIR/usr/include/pg_query.h, DIR/usr/lib/<triplet>/libpg_query.so), with an
# rpath to it so the binary runs without installing anything
PGQ_ROOT ?=
comma   := ,
PGQ_DIR  := $(if $(PGQ_ROOT),$(abspath $(PGQ_ROOT)))
PGQ_INC  := $(if $(PGQ_DIR),$(PGQ_DIR)/usr/include,/usr/include)
PGQ_LIBDIR := $(if $(PGQ_DIR),$(patsubst %/,%,$(firstword $(dir $(wildcard $(PGQ_DIR)/usr/lib/*/libpg_query.so $(PGQ_DIR)/usr/lib/libpg_query.so)))))
ifneq ($(PGQ_ROOT),)
ifeq ($(wildcard $(PGQ_INC)/pg_query.h),)
$(error PGQ_ROOT=$(PGQ_ROOT): no $(PGQ_INC)/pg_query.h (dpkg -x the libpg-query-dev 17 package into it))
endif
ifeq ($(PGQ_LIBDIR),)
$(error PGQ_ROOT=$(PGQ_ROOT): no usr/lib/*/libpg_query.so under it (dpkg -x libpg-query-dev and libpg-query1706.0 into it))
endif
endif
ALL_CFLAGS = $(CFLAGS) -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Wshadow -Wno-unused-parameter \
           -Iinclude $(if $(PGQ_ROOT),-I$(PGQ_INC)) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PGQ_LDFLAGS := $(if $(PGQ_LIBDIR),-L$(PGQ_LIBDIR) -Wl$(comma)-rpath$(comma)$(PGQ_LIBDIR))
LDLIBS  += $(PGQ_LDFLAGS) \
           $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpg_query -lm

SRCS    := $(wildcard engine/*.c)
OBJS    := $(patsubst engine/%.c,$(BUILD)/%.o,$(SRCS))
LIBOBJS := $(filter-out $(BUILD)/main.o,$(OBJS))
CTESTS  := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(wildcard tests/c/test_*.c))

# install layout: the binary finds its scripts in <bindir>/../share/migfix,
# so an installed tree still works after it is moved; DATADIR is only the
# last fallback baked into the binary.
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  := $(PREFIX)/bin
DATADIR := $(PREFIX)/share/migfix
DOCDIR  := $(PREFIX)/share/doc/migfix
MAN1DIR := $(PREFIX)/share/man/man1
BASHCOMPDIR := $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  := $(PREFIX)/share/zsh/site-functions
LUA_SRCS := $(shell find scripts/migfix scripts/meta scripts/examples policies -name '*.lua' 2>/dev/null)
# the modules' bytecode (luac5.4, line information kept; chunk names
# scripts/...): the binary loads it instead of a source it is not older than
LUAC    ?= luac5.4
LUAC_OBJS := $(patsubst scripts/%.lua,$(BUILD)/luac/%.luac,$(filter scripts/migfix/%,$(LUA_SRCS)))
DOCS    := README.md $(wildcard docs/*.md)
# run the freshly built binary on this tree's scripts (BIN may be a path elsewhere)
RUN     := MIGFIX_HOME='$(CURDIR)' $(if $(filter /%,$(BIN)),$(BIN),./$(BIN))
GEN     := $(BUILD)/man/migfix.1 $(BUILD)/completion/migfix.bash $(BUILD)/completion/_migfix

.PHONY: all deps demo test bench corpus stress asan clean unit install uninstall matrix gen fuzz FORCE

all: deps $(BIN) $(LUAC_OBJS)

# Missing headers/tools -> run the installer (needs root; says so otherwise).
deps:
	@if [ -n '$(PGQ_ROOT)' ] && ! grep -qs '^#define PG_MAJORVERSION "17"' '$(PGQ_INC)/pg_query.h'; then \
	  echo "make: error: PGQ_ROOT=$(PGQ_ROOT) holds no libpg_query 17 ($(PGQ_INC)/pg_query.h)" >&2; \
	  echo "make: hint: apt-get download libpg-query-dev/trixie libpg-query1706.0/trixie, then dpkg -x each into it" >&2; exit 2; \
	fi
	@if ! pkg-config --exists $(PKGS) || ! grep -qs '^#define PG_MAJORVERSION "17"' '$(PGQ_INC)/pg_query.h' \
	    || [ ! -f /usr/include/cmocka.h ] || ! command -v pg_dump >/dev/null \
	    || ! lua5.4 -e 'require"posix"' >/dev/null 2>&1 \
	    || [ ! -x /usr/lib/postgresql/15/bin/initdb ] \
	    || ! /usr/bin/python3 -c 'import prometheus_client, yaml' >/dev/null 2>&1 \
	    || ! command -v man >/dev/null || ! command -v zsh >/dev/null \
	    || ! command -v cmark-gfm >/dev/null || ! command -v xmllint >/dev/null || ! command -v strace >/dev/null; then \
	  echo "make: installing missing dependencies (scripts/install-deps)"; \
	  ./scripts/install-deps; \
	fi

$(BUILD)/luac/%.luac: scripts/%.lua
	@mkdir -p $(dir $@)
	$(LUAC) -o $@ $<

$(BIN): $(OBJS)
	$(CC) $(ALL_CFLAGS) -o $@ $(OBJS) $(LDFLAGS) $(LDLIBS)

$(BUILD)/%.o: engine/%.c include/migfix.h $(wildcard include/*.h) $(BUILD)/pgq.stamp
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# main.o holds the baked-in DATADIR: rebuilt when PREFIX changes
$(BUILD)/main.o: engine/main.c include/migfix.h $(wildcard include/*.h) $(BUILD)/datadir.stamp $(BUILD)/pgq.stamp
	$(CC) $(ALL_CFLAGS) -DMIGFIX_DATADIR='"$(DATADIR)"' -c -o $@ $<

$(BUILD)/datadir.stamp: FORCE
	@mkdir -p $(BUILD)
	@echo '$(DATADIR)' | cmp -s - $@ || echo '$(DATADIR)' > $@

# which libpg_query the objects were built against: everything rebuilds when PGQ_ROOT changes
$(BUILD)/pgq.stamp: FORCE
	@mkdir -p $(BUILD)
	@echo '$(PGQ_DIR)' | cmp -s - $@ || echo '$(PGQ_DIR)' > $@

# man page and completions come from the command tables (scripts/migfix/docgen.lua)
gen: $(GEN)

$(BUILD)/man/migfix.1: $(BIN) $(LUA_SRCS)
	@mkdir -p $(dir $@)
	MIGFIX_MAN_DATE="$$(git log -1 --format=%cs 2>/dev/null)" $(RUN) help --man > $@.tmp && mv $@.tmp $@

$(BUILD)/completion/migfix.bash: $(BIN) $(LUA_SRCS)
	@mkdir -p $(dir $@)
	$(RUN) completion bash > $@.tmp && mv $@.tmp $@

$(BUILD)/completion/_migfix: $(BIN) $(LUA_SRCS)
	@mkdir -p $(dir $@)
	$(RUN) completion zsh > $@.tmp && mv $@.tmp $@

install: $(BIN) $(GEN) $(LUAC_OBJS)
	install -d '$(DESTDIR)$(BINDIR)' '$(DESTDIR)$(DATADIR)' '$(DESTDIR)$(DOCDIR)' '$(DESTDIR)$(MAN1DIR)' \
	    '$(DESTDIR)$(BASHCOMPDIR)' '$(DESTDIR)$(ZSHCOMPDIR)'
	install -m 755 $(BIN) '$(DESTDIR)$(BINDIR)/migfix'
	for f in $(LUA_SRCS); do install -D -m 644 "$$f" '$(DESTDIR)$(DATADIR)/'"$$f" || exit 1; done
	for f in $(LUAC_OBJS); do install -D -m 644 "$$f" '$(DESTDIR)$(DATADIR)/luac/'"$${f#$(BUILD)/luac/}" || exit 1; done
	install -m 644 $(DOCS) '$(DESTDIR)$(DOCDIR)/'
	install -m 644 $(BUILD)/man/migfix.1 '$(DESTDIR)$(MAN1DIR)/migfix.1'
	install -m 644 $(BUILD)/completion/migfix.bash '$(DESTDIR)$(BASHCOMPDIR)/migfix'
	install -m 644 $(BUILD)/completion/_migfix '$(DESTDIR)$(ZSHCOMPDIR)/_migfix'
	@echo "installed migfix into $(DESTDIR)$(PREFIX) (scripts in $(DATADIR), man page migfix(1))"

uninstall:
	rm -f '$(DESTDIR)$(BINDIR)/migfix' '$(DESTDIR)$(MAN1DIR)/migfix.1' \
	    '$(DESTDIR)$(BASHCOMPDIR)/migfix' '$(DESTDIR)$(ZSHCOMPDIR)/_migfix'
	rm -rf '$(DESTDIR)$(DATADIR)' '$(DESTDIR)$(DOCDIR)'
	@echo "removed migfix from $(DESTDIR)$(PREFIX)"

$(BUILD)/tests/%: tests/c/%.c $(LIBOBJS)
	@mkdir -p $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBOBJS) $(LDFLAGS) $(LDLIBS) -lcmocka

# the fuzz targets (tests/fuzz/fuzz_*.c), each under its own entry name,
# replayed over the seed and regression corpora by a cmocka test in make test
FUZZ_TARGETS := url sql json migrations
FUZZ_REPLAY_OBJS := $(patsubst %,$(BUILD)/tests/fuzz_%.o,$(FUZZ_TARGETS))
$(BUILD)/tests/fuzz_%.o: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h tests/fuzz/fuzz_lua.h $(wildcard include/*.h)
	@mkdir -p $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) -Itests/fuzz -DFUZZ_ENTRY=fuzz_$*_entry -c -o $@ $<
$(BUILD)/tests/test_fuzz_corpus: tests/c/test_fuzz_corpus.c $(FUZZ_REPLAY_OBJS) $(LIBOBJS)
	@mkdir -p $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) -Itests/fuzz -o $@ $< $(FUZZ_REPLAY_OBJS) $(LIBOBJS) $(LDFLAGS) $(LDLIBS) -lcmocka

# make fuzz: clang with libFuzzer, AddressSanitizer and UBSan (build/fuzz);
# tests/fuzz/run seeds the corpora from tests/fixtures, runs every target for
# FUZZ_SECONDS, writes crashes to build/fuzz/crashes/<target>/ and reports
# the executions and crashes of each
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 30
FUZZ_BUILD   := build/fuzz
FUZZ_SAN     := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  = $(FUZZ_SAN) -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude -Itests/fuzz $(if $(PGQ_ROOT),-I$(PGQ_INC)) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_LIBOBJS := $(patsubst engine/%.c,$(FUZZ_BUILD)/obj/%.o,$(filter-out engine/main.c,$(SRCS)))
FUZZ_BINS    := $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_TARGETS))

$(FUZZ_BUILD)/obj/%.o: engine/%.c include/migfix.h $(wildcard include/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<
$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h tests/fuzz/fuzz_lua.h $(FUZZ_LIBOBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIBOBJS) $(LDLIBS)

fuzz: all
	$(MAKE) asan
	$(MAKE) $(FUZZ_BINS)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_TARGETS="$(FUZZ_TARGETS)" tests/fuzz/run

unit: $(CTESTS)

test: all unit
	@tests/run

demo: all
	@tests/demo/run

bench: all
	@tests/bench/run

# kill -9 at every libpq message and spawn of the writing commands, and the races
stress: all
	@tests/stress/run

matrix: all
	@tests/matrix/run

corpus: all
	@tests/corpus/run $(CORPUS)

asan:
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" \
	    LDFLAGS="-fsanitize=address,undefined" migfix-asan

migfix-asan: $(OBJS)
	$(CC) $(ALL_CFLAGS) -o $(BUILD)/migfix $(OBJS) $(LDFLAGS) $(LDLIBS)

clean:
	rm -rf build migfix
