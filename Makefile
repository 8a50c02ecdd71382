# cogos — build, test, bench, install.
#   make                      build build/cogos (+ cogtainer, cogent links)
#   make run                  build, create a local cogtainer/cogent if none, boot the stock image
#   make test                 every test; ends with "N passed, N failed"
#   make SANITIZER=address test
#   make bench
#   make install PREFIX=/usr/local DESTDIR=

PREFIX    ?= /usr/local
DESTDIR   ?=
DATADIR    = $(PREFIX)/share/cogos
SANITIZER ?=
BUILD     ?= build$(if $(SANITIZER),-$(SANITIZER))

PKGS       = lua5.4 libuv libcurl sqlite3 libedit
# libcurl and libedit are opened with dlopen on first use (core/http_lib.c, core/term.c),
# so a process that never needs them never maps them: headers only, not linked.
# dlopen itself is in libc (glibc >= 2.34).
LINK_PKGS  = lua5.4 libuv sqlite3
# Debian packages the build and the tests need; installed when missing and we are root.
DEBS       = gcc make pkg-config liblua5.4-dev libuv1-dev libcurl4-openssl-dev libsqlite3-dev \
             libedit-dev lua-check nodejs tmux

CC        ?= cc
OPT       ?= -O2
WARN       = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
             -Wno-unused-parameter -Wwrite-strings -Werror
CFLAGS    += -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) $(shell pkg-config --cflags $(PKGS) 2>/dev/null) \
             -DCOGOS_DATADIR='"$(DATADIR)"'
LDLIBS    += $(shell pkg-config --libs $(LINK_PKGS) 2>/dev/null) -lm

ifneq ($(SANITIZER),)
  ifeq ($(filter $(SANITIZER),address undefined),)
    $(error SANITIZER must be address or undefined)
  endif
  CFLAGS  += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer $(if $(filter address,$(SANITIZER)),-fsanitize=undefined)
  LDFLAGS += -fsanitize=$(SANITIZER) $(if $(filter address,$(SANITIZER)),-fsanitize=undefined)
  OPT      = -O1
endif

CORE_SRC   = $(filter-out core/main.c,$(wildcard core/*.c))
CORE_OBJ   = $(CORE_SRC:core/%.c=$(BUILD)/obj/%.o)
UNIT_SRC   = $(wildcard tests/unit/test_*.c)
UNIT_BIN   = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps run test unit spec e2e lint bench install uninstall clean

all: deps $(BUILD)/cogos $(BUILD)/cogtainer $(BUILD)/cogent

deps:
	@sh tests/deps.sh $(DEBS)

$(BUILD)/obj/%.o: core/%.c core/*.h | $(BUILD)/obj
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj $(BUILD)/tests:
	@mkdir -p $@

$(BUILD)/cogos: $(BUILD)/obj/main.o $(CORE_OBJ)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/cogtainer $(BUILD)/cogent: $(BUILD)/cogos
	@ln -sf cogos $@

$(BUILD)/tests/%: tests/unit/%.c tests/unit/*.h $(CORE_OBJ) | $(BUILD)/tests
	$(CC) $(CFLAGS) -Icore $< $(CORE_OBJ) $(LDFLAGS) $(LDLIBS) -o $@

run: all
	@$(BUILD)/cogtainer status >/dev/null 2>&1 || $(BUILD)/cogtainer create dev --type local
	@$(BUILD)/cogent status >/dev/null 2>&1 || $(BUILD)/cogent create demo
	$(BUILD)/cogos start --foreground

test: all $(UNIT_BIN)
	@BUILD=$(BUILD) sh tests/run.sh

bench: all
	@$(BUILD)/cogos lua tests/bench/run.lua

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(DATADIR)
	install -m 755 $(BUILD)/cogos $(DESTDIR)$(PREFIX)/bin/cogos
	ln -sf cogos $(DESTDIR)$(PREFIX)/bin/cogtainer
	ln -sf cogos $(DESTDIR)$(PREFIX)/bin/cogent
	cp -R lua capabilities images $(DESTDIR)$(DATADIR)/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/cogos $(DESTDIR)$(PREFIX)/bin/cogtainer $(DESTDIR)$(PREFIX)/bin/cogent
	rm -rf $(DESTDIR)$(DATADIR)

clean:
	rm -rf build build-*
