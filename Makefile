# SPDX-License-Identifier: MIT
# precopy — plain Makefile. Quiet by default; V=1 shows full commands.
#
#   make            library (static + shared), tools, simulator, benchmarks into build/
#   make test       build and run the Criterion suites (installs deps if missing)
#   make tsan       the suites that run threads, under ThreadSanitizer
#   make bench      run the benchmarks in perf/
#   make sim        run precopy-sim on its built-in scenario
#   make install    PREFIX=/usr/local DESTDIR= (library, headers, .pc, tools, precopy-vmm,
#                   man pages generated from the headers and the tools' --help)
#   make check-install  install into a temporary prefix, build and run the
#                   examples against it through pkg-config (shared and static)
#   make check-bindgen  the Rust bindings of precopy.h (bindgen, rustc layout
#                   tests); skips where bindgen is not installed
#   make man        man pages into build/man (man -l build/man/man3/precopy.3)
#   make deps       check/install the Debian packages the project needs
#
# Knobs: WERROR=1 (warnings are errors; CI sets it), SANITIZE=address,undefined
# (builds into build-san/ unless BUILD is given; SANITIZE=thread into
# build-tsan/, the suites run without Criterion's runner: see `make tsan`),
# CC=clang, BUILD=dir.

# the version comes from include/precopy/version.h, its one source
version_part = $(shell sed -n 's/^\#define PRECOPY_VERSION_$(1) \([0-9]*\).*/\1/p' include/precopy/version.h)
VERSION_MAJOR := $(call version_part,MAJOR)
VERSION       := $(VERSION_MAJOR).$(call version_part,MINOR).$(call version_part,PATCH)
SONAME        := libprecopy.so.$(VERSION_MAJOR)

PREFIX  ?= /usr/local
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man

comma   := ,
TSAN    := $(filter thread,$(subst $(comma), ,$(SANITIZE)))
ifneq ($(TSAN),)
BUILD   ?= build-tsan
else ifneq ($(SANITIZE),)
BUILD   ?= build-san
else
BUILD   ?= build
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

OBJCOPY ?= objcopy
PKGS    := liburing libpci numa
CPPFLAGS += -Iinclude -D_GNU_SOURCE
CFLAGS  ?= -O2 -g
CXXFLAGS ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter -fPIC -fvisibility=hidden -pthread
CXXFLAGS += -std=c++17 -pedantic -Wall -Wextra
ifeq ($(WERROR),1)
CFLAGS  += -Werror
CXXFLAGS += -Werror
endif
ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SANITIZE)
endif
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -luring -lpci -lnuma) -lpthread -lm
# the simulator's scenario parser (libprecopy-sim.a) needs libinih
SIM_LDLIBS := $(shell pkg-config --libs inih 2>/dev/null || echo -linih)

# Per-file SIMD flags: a source named *_avx512.c or *_avx2.c is compiled for
# that ISA; the dispatcher in bitmap/dispatch.c only calls it where the CPU has it.
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vpopcntdq \
                -mavx512vbmi -mavx512vbmi2 -mavx512bitalg -mbmi -mbmi2 -mpopcnt -mlzcnt
AVX2_FLAGS   := -mavx2 -mbmi -mbmi2 -mpopcnt -mlzcnt

LIB_SRCS   := $(sort $(wildcard bitmap/*.c ioctl/*.c stream/*.c estimator/*.c engine/*.c vfio_user/*.c))
FAKELIB_SRCS:= $(sort $(wildcard fake/*.c))
HARNESSLIB_SRCS:= $(sort $(wildcard harness/*.c))
SIMLIB_SRCS:= $(sort $(filter-out sim/main.c,$(wildcard sim/*.c)))
TESTLIB_SRCS:= $(sort $(wildcard tests/lib/*.c))
PERFLIB_SRCS:= $(sort $(wildcard perf/lib/*.c))
TEST_SRCS  := $(sort $(wildcard tests/test-*.c))
BENCH_SRCS := $(sort $(wildcard perf/bench-*.c))
TOOL_SRCS  := $(sort $(wildcard tools/precopy-*.c))
# what the tools share (the JSON string writer); libprecopy-sim.a carries it too
TOOLLIB_SRCS:= $(sort $(filter-out $(TOOL_SRCS),$(wildcard tools/*.c)))
# precopy-vmm: its C sources, and its guests (boot sectors assembled from
# vmm/guests/*.S with the toolchain's assembler, linked at 0x7c00, cut to
# their 512 bytes by objcopy, then embedded by vmm/guests.S)
VMM_SRCS   := $(sort $(wildcard vmm/*.c))
VMM_GUESTS := $(patsubst vmm/guests/%.S,$(BUILD)/vmm/guests/%.bin,$(sort $(wildcard vmm/guests/*.S)))
FUZZ_SRCS  := $(sort $(wildcard tests/fuzz/fuzz-*.c))
CXX_SRCS   := $(sort $(wildcard tests/cxx/*.cpp))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIB_OBJS    := $(call obj,$(LIB_SRCS))
TOOLLIB_OBJS:= $(call obj,$(TOOLLIB_SRCS))
SIMLIB_OBJS := $(call obj,$(SIMLIB_SRCS)) $(TOOLLIB_OBJS)
FAKELIB_OBJS:= $(call obj,$(FAKELIB_SRCS))
HARNESSLIB_OBJS:= $(call obj,$(HARNESSLIB_SRCS))
TESTLIB_OBJS:= $(call obj,$(TESTLIB_SRCS))
PERFLIB_OBJS:= $(call obj,$(PERFLIB_SRCS))

STATIC  := $(BUILD)/libprecopy.a
SHARED  := $(BUILD)/libprecopy.so.$(VERSION)
SIMLIB  := $(BUILD)/libprecopy-sim.a
FAKELIB := $(BUILD)/libprecopy-fake.a
HARNESSLIB := $(BUILD)/libprecopy-harness.a
# what the tests, benchmarks and precopy-sim link besides the library: the
# simulator's pieces, the VMM's role they and the tests share, then the
# fake kernel they run on
HARNESS := $(SIMLIB) $(HARNESSLIB) $(FAKELIB)
TESTS   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRCS))
CXX_TESTS := $(patsubst tests/cxx/%.cpp,$(BUILD)/tests/cxx/%,$(CXX_SRCS))
ifneq ($(TSAN),)
# Criterion cannot start under ThreadSanitizer: see the tsan target below
TESTS   := $(patsubst tests/%.c,$(BUILD)/tsan/%,$(TEST_SRCS))
endif
BENCHES := $(patsubst perf/%.c,$(BUILD)/perf/%,$(BENCH_SRCS))
TOOLS   := $(patsubst tools/%.c,$(BUILD)/%,$(TOOL_SRCS))
SIMBIN  := $(BUILD)/precopy-sim
VMM     := $(BUILD)/precopy-vmm
# headers `make install` installs: not the fake kernel's (precopy/fake.h),
# which only the test and simulator archive libprecopy-sim.a implements
PUBLIC_HDRS := $(sort $(filter-out include/precopy/fake.h,$(wildcard include/precopy/*.h)))

# helper objects are shared by every test/bench binary: keep them
.SECONDARY: $(TESTLIB_OBJS) $(PERFLIB_OBJS) $(BUILD)/obj/tests/tsan/runner.o

.PHONY: all lib test bench sim install uninstall deps clean fuzz check-install check-bindgen man
all: lib $(TOOLS) $(SIMBIN) $(VMM) $(BUILD)/tests/vu-server $(BENCHES)
lib: $(STATIC) $(SHARED)

# ---- compile --------------------------------------------------------------
$(BUILD)/obj/%_avx512.o: %_avx512.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(AVX512_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%_avx2.o: %_avx2.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(AVX2_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
# test and benchmark programs are compiled and linked in one step; their
# dependency files (their own headers: tests/test-engine.h, tests/lib/...)
# sit beside them
-include $(wildcard $(BUILD)/tests/*.d $(BUILD)/perf/*.d)

# ---- libraries --------------------------------------------------------------
$(STATIC): $(LIB_OBJS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(SHARED): $(LIB_OBJS) include/libprecopy.map
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -shared -Wl,-soname,$(SONAME) \
	  -Wl,--version-script=include/libprecopy.map -o $@ $(LIB_OBJS) $(LDLIBS)
	$(Q)ln -sf $(notdir $@) $(BUILD)/$(SONAME) && ln -sf $(SONAME) $(BUILD)/libprecopy.so

$(SIMLIB): $(SIMLIB_OBJS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(FAKELIB): $(FAKELIB_OBJS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(HARNESSLIB): $(HARNESSLIB_OBJS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

# ---- programs ---------------------------------------------------------------
$(BUILD)/precopy-%: tools/precopy-%.c $(TOOLLIB_OBJS) $(STATIC)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(TOOLLIB_OBJS) $(STATIC) $(LDLIBS)

$(BUILD)/precopy-sim: sim/main.c $(HARNESS) $(STATIC)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(HARNESS) $(STATIC) $(LDLIBS) $(SIM_LDLIBS)

$(BUILD)/vmm/guests/%.bin: vmm/guests/%.S vmm/guests/common.inc
	@mkdir -p $(@D)
	@$(if $(Q),echo "  GUEST   $@")
	$(Q)$(CC) -m32 -c -Ivmm/guests $< -o $(@:.bin=.o)
	$(Q)$(LD) -m elf_i386 -Ttext 0x7c00 -e _start -o $(@:.bin=.elf) $(@:.bin=.o)
	$(Q)$(OBJCOPY) -O binary -j .text $(@:.bin=.elf) $@
	$(Q)test "$$(stat -c %s $@)" = 512 || { echo "$@: not a 512-byte boot sector" >&2; rm -f $@; exit 1; }

$(BUILD)/obj/vmm/guests.o: vmm/guests.S $(VMM_GUESTS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  AS      $@")
	$(Q)$(CC) -c -I$(BUILD)/vmm/guests $< -o $@

$(VMM): $(call obj,$(VMM_SRCS)) $(BUILD)/obj/vmm/guests.o $(STATIC)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(call obj,$(VMM_SRCS)) $(BUILD)/obj/vmm/guests.o $(STATIC) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(TESTLIB_OBJS) $(HARNESS) $(STATIC)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CPPFLAGS) -Itests $(CFLAGS) $(LDFLAGS) -MMD -MP -MF $@.d -MT $@ -o $@ $< $(TESTLIB_OBJS) $(HARNESS) $(STATIC) -lcriterion $(LDLIBS) $(SIM_LDLIBS)

# the tests' vfio-user server as a program (tests/vu-server.c): for
# precopy-vmm --device, by hand and in the precopy-vmm suite
VUSERVER := $(BUILD)/tests/vu-server
$(VUSERVER): tests/vu-server.c $(BUILD)/obj/tests/lib/vu_server.o
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CPPFLAGS) -Itests $(CFLAGS) $(LDFLAGS) -o $@ $^

# the precopy-vmm suite runs the program and the server
$(BUILD)/tests/test-vmm: $(VMM) $(VUSERVER)

# C++ programs against the shared library, as a C++ VMM would link it
$(BUILD)/tests/cxx/%: tests/cxx/%.cpp $(SHARED)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CXX     $@")
	$(Q)$(CXX) $(CPPFLAGS) $(CXXFLAGS) $(LDFLAGS) -o $@ $< -L$(BUILD) -lprecopy -Wl,-rpath,$(abspath $(BUILD))

$(BUILD)/perf/%: perf/%.c $(PERFLIB_OBJS) $(HARNESS) $(STATIC)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CPPFLAGS) -Iperf $(CFLAGS) $(LDFLAGS) -MMD -MP -MF $@.d -MT $@ -o $@ $< $(PERF_EXTRA) $(PERFLIB_OBJS) $(HARNESS) $(STATIC) $(LDLIBS) $(SIM_LDLIBS)

# bench-drain runs the tests' vfio-user server and device stand-ins
$(BUILD)/perf/bench-drain: PERF_EXTRA := $(BUILD)/obj/tests/lib/vu_server.o $(BUILD)/obj/tests/lib/standin.o
$(BUILD)/perf/bench-drain: $(BUILD)/obj/tests/lib/vu_server.o $(BUILD)/obj/tests/lib/standin.o

# libFuzzer harnesses: clang only, built with their own sanitized objects.
FUZZ_CC    ?= clang
FUZZ_BUILD := build-fuzz
FUZZERS    := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRCS))
# FUZZ_SECONDS=N: also run every harness N seconds from its seed corpus
# tests/fuzz/corpus-NAME (tests/fuzz/run.sh; FUZZ_MERGE=1 keeps new inputs).
FUZZ_SECONDS ?=
fuzz:
	$(Q)if [ -z "$(FUZZ_SRCS)" ]; then echo "no fuzz harness in tests/fuzz/" >&2; exit 2; fi
	$(Q)$(MAKE) --no-print-directory $(FUZZERS)
	$(Q)if [ -n "$(FUZZ_SECONDS)" ]; then ./tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZERS); \
	else echo "built: $(FUZZERS)  (run each: make fuzz FUZZ_SECONDS=60)"; fi

$(FUZZ_BUILD)/fuzz-%: tests/fuzz/fuzz-%.c $(LIB_SRCS) $(SIMLIB_SRCS) $(HARNESSLIB_SRCS) $(FAKELIB_SRCS) $(TOOLLIB_SRCS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD)/objs CC=$(FUZZ_CC) \
	  SANITIZE=address,undefined CFLAGS="-O1 -g -fsanitize=fuzzer-no-link" \
	  $(FUZZ_BUILD)/objs/libprecopy.a $(FUZZ_BUILD)/objs/libprecopy-sim.a $(FUZZ_BUILD)/objs/libprecopy-harness.a \
	  $(FUZZ_BUILD)/objs/libprecopy-fake.a
	$(Q)$(FUZZ_CC) $(CPPFLAGS) -O1 -g -fsanitize=fuzzer,address,undefined -o $@ $< \
	  $(FUZZ_BUILD)/objs/libprecopy-sim.a $(FUZZ_BUILD)/objs/libprecopy-harness.a $(FUZZ_BUILD)/objs/libprecopy-fake.a $(FUZZ_BUILD)/objs/libprecopy.a $(LDLIBS) $(SIM_LDLIBS)

# ThreadSanitizer: Criterion's runner cannot start under TSan
# (docs/sanitizers.md), so the suites are built against
# tests/tsan/criterion/criterion.h and run by tests/tsan/runner.c. `make
# tsan` does it for the suites that run threads (the harvest's and the
# engine's setters, the live bitmap's writers, the parallel merge, the threaded destination, the
# back-end threads, the aio queue's slow writers), into build-tsan/;
# `make test SANITIZE=thread` for every suite.
TSAN_SUITES := bitmap-harvest bitmap-live bitmap-parallel engine-e2e engine-ack engine-backend engine-faults \
               backend sys-aio
TSAN_BUILD  := build-tsan
TSAN_ENV    := TSAN_OPTIONS="$${TSAN_OPTIONS:-second_deadlock_stack=1}"
TSAN_RUNNER := $(BUILD)/obj/tests/tsan/runner.o

$(BUILD)/tsan/test-%: tests/test-%.c $(TSAN_RUNNER) $(TESTLIB_OBJS) $(HARNESS) $(STATIC)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CPPFLAGS) -Itests/tsan -Itests $(CFLAGS) $(LDFLAGS) -o $@ $< $(TSAN_RUNNER) $(TESTLIB_OBJS) \
	  $(HARNESS) $(STATIC) $(LDLIBS) $(SIM_LDLIBS)

.PHONY: tsan
tsan: deps
	$(Q)$(MAKE) --no-print-directory BUILD=$(TSAN_BUILD) SANITIZE=thread \
	  $(patsubst %,$(TSAN_BUILD)/tsan/test-%,$(TSAN_SUITES))
	$(Q)$(TSAN_ENV) ./tests/run.sh $(patsubst %,$(TSAN_BUILD)/tsan/test-%,$(TSAN_SUITES))

# ---- top-level jobs ---------------------------------------------------------
deps:
	$(Q)./tools/install-deps.sh

test: deps
	$(Q)$(MAKE) --no-print-directory $(TESTS) $(CXX_TESTS) $(TOOLS) $(SIMBIN) $(VMM) $(BUILD)/tests/vu-server
	$(Q)./tests/check-symbols.sh $(STATIC)
	$(Q)./tests/check-calls.sh $(LIB_OBJS)
	$(Q)./tests/check-calls.sh $(HARNESSLIB_OBJS) $(SIMLIB_OBJS)
	$(Q)CC="$(CC)" CXX="$(CXX)" ./tests/check-headers.sh include
	$(Q)set -e; for t in $(CXX_TESTS); do $$t; done
	$(Q)./tests/run.sh $(TESTS)

check-install: deps
	$(Q)./tests/check-install.sh

check-bindgen: deps
	$(Q)./tests/check-bindgen.sh

# man pages into $(BUILD)/man from the headers and the tools' --help
man: $(TOOLS) $(SIMBIN) $(VMM)
	$(Q)rm -rf $(BUILD)/man && ./tools/gen-man.sh $(BUILD)/man $(VERSION) $(TOOLS) $(SIMBIN) $(VMM)

bench: deps
	$(Q)$(MAKE) --no-print-directory $(BENCHES)
	$(Q)set -e; for b in $(BENCHES); do echo "== $$b"; $$b; done

sim: deps
	$(Q)$(MAKE) --no-print-directory $(SIMBIN)
	$(Q)$(SIMBIN)

# The .pc is written here, not at build time, so that it names the PREFIX,
# LIBDIR and INCDIR of this install (a plain `make` followed by
# `make install PREFIX=X` gets prefix=X).
install: lib
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCDIR)/precopy $(DESTDIR)$(BINDIR)
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf libprecopy.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libprecopy.so
	install -m 644 include/precopy.h $(DESTDIR)$(INCDIR)/
	install -m 644 $(PUBLIC_HDRS) $(DESTDIR)$(INCDIR)/precopy/
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCDIR@|$(INCDIR)|; s|@VERSION@|$(VERSION)|' \
	  libprecopy.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/libprecopy.pc
	chmod 644 $(DESTDIR)$(LIBDIR)/pkgconfig/libprecopy.pc
	$(MAKE) --no-print-directory $(TOOLS) $(SIMBIN) $(VMM)
	install -m 755 $(TOOLS) $(SIMBIN) $(VMM) $(DESTDIR)$(BINDIR)/
	$(MAKE) --no-print-directory man
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3
	install -m 644 $(BUILD)/man/man1/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(BUILD)/man/man3/*.3 $(DESTDIR)$(MANDIR)/man3/

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libprecopy.* $(DESTDIR)$(LIBDIR)/pkgconfig/libprecopy.pc
	rm -rf $(DESTDIR)$(INCDIR)/precopy $(DESTDIR)$(INCDIR)/precopy.h
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(TOOLS) $(SIMBIN) $(VMM)))
	rm -f $(DESTDIR)$(MANDIR)/man1/precopy-*.1 $(DESTDIR)$(MANDIR)/man3/precopy.3 \
	      $(DESTDIR)$(MANDIR)/man3/precopy_*.3

clean:
	rm -rf build build-san build-tsan build-fuzz
