# migfix — build, test, demo, bench.
#   make            build ./migfix (installs missing Debian packages first, as root)
#   make demo       throwaway PostgreSQL + realistic failed migration, resolved by migfix
#   make test       every test against a real PostgreSQL; ends with "N passed, N failed"
#   make bench      benchmarks (not tests)
#   make corpus CORPUS="DIR [DIR...]"  differential state harness over Prisma
#                   migrations folders (not a test; tests/corpus/README.md)
#   make asan       build with AddressSanitizer/UBSan into build/asan/migfix

CC      ?= cc
PKGS    := lua5.4 libpq libcrypto libcjson icu-i18n
BUILD   ?= build
BIN     ?= migfix
CFLAGS  ?= -O2 -g
ALL_CFLAGS = $(CFLAGS) -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Wshadow -Wno-unused-parameter \
           -Iinclude $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpg_query -lm

SRCS    := $(wildcard engine/*.c)
OBJS    := $(patsubst engine/%.c,$(BUILD)/%.o,$(SRCS))
LIBOBJS := $(filter-out $(BUILD)/main.o,$(OBJS))
CTESTS  := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(wildcard tests/c/test_*.c))

.PHONY: all deps demo test bench corpus asan clean unit

all: deps $(BIN)

# Missing headers/tools -> run the installer (needs root; says so otherwise).
deps:
	@if ! pkg-config --exists $(PKGS) || [ ! -f /usr/include/pg_query.h ] \
	    || [ ! -f /usr/include/cmocka.h ] || ! command -v pg_dump >/dev/null \
	    || ! lua5.4 -e 'require"posix"' >/dev/null 2>&1 \
	    || [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then \
	  echo "make: installing missing dependencies (scripts/install-deps)"; \
	  ./scripts/install-deps; \
	fi

$(BIN): $(OBJS)
	$(CC) $(ALL_CFLAGS) -o $@ $(OBJS) $(LDFLAGS) $(LDLIBS)

$(BUILD)/%.o: engine/%.c include/migfix.h $(wildcard include/*.h)
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -DMIGFIX_DATADIR='"$(CURDIR)"' -c -o $@ $<

$(BUILD)/tests/%: tests/c/%.c $(LIBOBJS)
	@mkdir -p $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBOBJS) $(LDFLAGS) $(LDLIBS) -lcmocka

unit: $(CTESTS)

test: all unit
	@tests/run

demo: all
	@tests/demo/run

bench: all
	@tests/bench/run

corpus: all
	@tests/corpus/run $(CORPUS)

asan:
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" \
	    LDFLAGS="-fsanitize=address,undefined" migfix-asan

migfix-asan: $(OBJS)
	$(CC) $(ALL_CFLAGS) -o $(BUILD)/migfix $(OBJS) $(LDFLAGS) $(LDLIBS)

clean:
	rm -rf build migfix
