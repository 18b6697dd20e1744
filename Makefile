# pg_imgset — builds the imgset CLI, its library, the tests and the PostgreSQL extension.
#   make            build everything this machine can build (prints what it found)
#   make check      install missing packages, build, run every test suite
#   make demo       install missing packages, build, run the small benchmark
#   make install    install the extension into the PostgreSQL found by pg_config, and the
#                   Python package where /usr/bin/python3 finds it (/usr/local/lib/python3*)
# Turn optional parts off with NO_HDF5=1, NO_PG=1, NO_CUDA=1, NO_MPI=1, NO_FUZZ=1, NO_PYTHON=1.

CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation \
           -pthread -fPIC
LDLIBS  := -lm -pthread
BUILD   := build
PKG     := pkg-config

# ---- probe the libraries -------------------------------------------------------------
found   :=
missing :=
define probe_pkg   # $(1)=pkg-config name, $(2)=define
$(if $(shell $(PKG) --exists $(1) && echo yes),\
  $(eval CFLAGS += $(shell $(PKG) --cflags $(1)) -D$(2))\
  $(eval LDLIBS += $(shell $(PKG) --libs $(1)))\
  $(eval found += $(1)),\
  $(eval missing += $(1)))
endef

# Required: image codecs, zlib, xxhash (digests), OpenBLAS (the nn core).
$(call probe_pkg,libpng,IMGSET_HAVE_PNG)
$(call probe_pkg,libjpeg,IMGSET_HAVE_JPEG)
$(call probe_pkg,zlib,IMGSET_HAVE_ZLIB)
$(call probe_pkg,libxxhash,IMGSET_HAVE_XXHASH)
$(call probe_pkg,openblas,IMGSET_HAVE_OPENBLAS)

# Optional: libdeflate (faster inflate of HDF5 gzip chunks; zlib otherwise), HDF5, libpq, CUDA.
$(call probe_pkg,libdeflate,IMGSET_HAVE_LIBDEFLATE)
ifndef NO_HDF5
$(call probe_pkg,hdf5,IMGSET_HAVE_HDF5)
endif
HAVE_HDF5 := $(filter hdf5,$(found))

PG_CONFIG ?= $(shell command -v pg_config 2>/dev/null)
ifndef NO_PG
ifneq ($(PG_CONFIG),)
CFLAGS  += -I$(shell $(PG_CONFIG) --includedir) -DIMGSET_HAVE_LIBPQ \
           -DIMGSET_PG_BINDIR='"$(shell $(PG_CONFIG) --bindir)"'
LDLIBS  += -L$(shell $(PG_CONFIG) --libdir) -lpq
found   += libpq
HAVE_PG := yes
HAVE_PGXS := $(shell test -f "$$($(PG_CONFIG) --pgxs)" && echo yes)
else
missing += libpq
endif
endif

# CUDA: the toolkit's home is $CUDA_HOME, or the first of /usr/local/cuda, /usr/local/cuda-*
# and the folder above an nvcc found on the PATH that holds the CUDA runtime library (an nvcc
# on the PATH may be a wrapper script, so its folder alone is not trusted).
CUDA_CANDIDATES := /usr/local/cuda $(sort $(wildcard /usr/local/cuda-*)) \
                   $(patsubst %/bin/nvcc,%,$(realpath $(shell command -v nvcc 2>/dev/null)))
CUDA_HOME ?= $(firstword $(foreach d,$(CUDA_CANDIDATES),$(if $(wildcard $(d)/lib64/libcudart.so),$(d))))
NVCC      ?= $(wildcard $(CUDA_HOME)/bin/nvcc)
ifndef NO_CUDA
ifneq ($(and $(NVCC),$(wildcard $(CUDA_HOME)/lib64/libcudart.so),$(wildcard $(CUDA_HOME)/lib64/libcublas.so)),)
# Native code for H100/H200 (sm_90) and A100 (sm_80), PTX for anything newer.
NVCC_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
             -gencode arch=compute_90,code=compute_90
HAVE_CUDA := yes
found   += cuda
else
missing += cuda
endif
endif

# MPI (mpirun -np N imgset train): Open MPI's compiler wrapper tells its flags. Only the CLI's
# trainer/cli/ranks_mpi.c includes mpi.h and only the imgset binaries link it; the library
# and every other program stay free of MPI.
MPICC ?= $(shell command -v mpicc 2>/dev/null)
ifndef NO_MPI
ifneq ($(MPICC),)
MPI_CFLAGS := $(shell $(MPICC) --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell $(MPICC) --showme:link 2>/dev/null)
endif
ifneq ($(MPI_LIBS),)
HAVE_MPI := yes
CFLAGS   += -DIMGSET_HAVE_MPI
found    += mpi
else
missing  += mpi
endif
endif

# Python: the package is built for Debian's /usr/bin/python3 (not a python on the PATH) when
# it has its headers (python3-dev) and numpy. One probe: include dir, module suffix, site dir.
PYTHON ?= /usr/bin/python3
ifndef NO_PYTHON
PY_PROBE := $(shell $(PYTHON) -c "import os, sysconfig, numpy; p = sysconfig.get_paths(); \
    ok = os.path.exists(os.path.join(p['include'], 'Python.h')); \
    print(p['include'], sysconfig.get_config_var('EXT_SUFFIX'), p['platlib']) if ok else 0" \
    2>/dev/null)
endif
ifeq ($(words $(PY_PROBE)),3)
PY_INCLUDE := $(word 1,$(PY_PROBE))
PY_EXT     := $(word 2,$(PY_PROBE))
PY_SITE    := $(word 3,$(PY_PROBE))
found   += python
else
missing += python(python3-dev+numpy)
endif

# Library versions for the benchmark's machine line.
LIB_VERSIONS := $(foreach p,libpng libjpeg zlib libdeflate hdf5 openblas libpq,$(p) $(shell $(PKG) --modversion $(p) 2>/dev/null || echo none))
CFLAGS  += -DIMGSET_LIBRARY_VERSIONS='"$(strip $(LIB_VERSIONS))"'

FUZZ_CC := $(shell command -v clang 2>/dev/null)
ifdef NO_FUZZ
FUZZ_CC :=
endif

# ---- sources -------------------------------------------------------------------------
# libimgset.a: the loaders, the nn core (trainer/nn: what the extension runs too) and the
# training executor (trainer/train); optional backends drop out. The CLI is trainer/cli.
OPTIONAL_OFF := $(if $(HAVE_HDF5),,loaders/store_hdf5.c) \
                $(if $(HAVE_PG),,loaders/store_pg.c)
LIB_SRC  := $(filter-out $(OPTIONAL_OFF),$(wildcard loaders/*.c)) \
            $(wildcard trainer/nn/*.c trainer/train/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_SRC  := $(filter-out $(if $(HAVE_MPI),,trainer/cli/ranks_mpi.c),$(wildcard trainer/cli/*.c))
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
CU_SRC   := $(if $(HAVE_CUDA),$(wildcard loaders/*.cu trainer/train/*.cu))
CU_OBJ   := $(CU_SRC:%.cu=$(BUILD)/obj/%.o)
ifneq ($(CU_SRC),)
CFLAGS   += -DIMGSET_HAVE_CUDA -I$(CUDA_HOME)/include
LDLIBS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublas -lstdc++
endif
# C tests: test/unit/, and test/gpu/ (they skip their device tests, saying why, without a GPU).
UNIT_SRC := $(wildcard test/unit/test_*.c test/gpu/test_*.c)
UNIT_BIN := $(patsubst %.c,$(BUILD)/test/%,$(notdir $(UNIT_SRC)))
# The GPU code run on the host (test/gpu/emu), in CUDA builds: see below.
EMU_BIN  := $(if $(HAVE_CUDA),$(BUILD)/test/test_gpu_emu $(BUILD)/test/test_gpu_train_emu \
                               $(BUILD)/imgset_emu $(BUILD)/test/test_emu)
# C tests that need a PostgreSQL server (test/pg/test_*.c), run by test/pg/run.sh.
PGTEST_BIN := $(if $(HAVE_PG),$(patsubst test/pg/%.c,$(BUILD)/pgtest/%,$(wildcard test/pg/test_*.c)))
# Benchmark programs; bench_batch is a libpq client, allreduce an MPI program.
BENCH_SRC := $(filter-out $(if $(HAVE_PG),,test/bench/bench_batch.c) \
                          $(if $(HAVE_MPI),,test/bench/allreduce.c),$(wildcard test/bench/*.c))
BENCH_BIN := $(patsubst test/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
# The Python package in build/python (PYTHONPATH=build/python), and in CUDA builds the same
# module linked against the host emulation of CUDA (build/python-emu/_imgset_emu), for tests.
PY_OBJ    := $(patsubst python/src/%.c,$(BUILD)/pyobj/%.o,$(wildcard python/src/*.c))
PY_CLI_OBJ := $(if $(HAVE_PG),$(BUILD)/obj/trainer/cli/pgserver.o)   # the bench's cluster
PY_MODULE := $(if $(PY_INCLUDE),$(BUILD)/python/imgset/_imgset$(PY_EXT))
PY_FILES  := $(if $(PY_INCLUDE),$(patsubst python/%,$(BUILD)/python/%,$(wildcard python/imgset/*.py)))
PY_EMU    := $(if $(and $(PY_INCLUDE),$(HAVE_CUDA)),$(BUILD)/python-emu/_imgset_emu$(PY_EXT))
FUZZ_SRC := $(if $(FUZZ_CC),$(wildcard test/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:test/fuzz/%.c=$(BUILD)/fuzz/%)
INCLUDES := -Iloaders -Itrainer/nn -Itrainer/train -Itrainer/cli
HEADERS  := $(wildcard loaders/*.h trainer/*/*.h)
CFLAGS   += $(INCLUDES)

.PHONY: all check demo bench install install-python install-if-root deps extension clean report \
        python-flags
.SECONDARY:
all: report $(BUILD)/imgset $(UNIT_BIN) $(EMU_BIN) $(PGTEST_BIN) $(BENCH_BIN) $(FUZZ_BIN) extension \
     $(PY_MODULE) $(PY_FILES) $(PY_EMU)

report:
	@echo "imgset build: found: $(strip $(found))"
	@echo "imgset build: left out: $(if $(strip $(missing)),$(strip $(missing)),nothing)$(if $(FUZZ_CC),, fuzzers(no clang))"

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/trainer/cli/ranks_mpi.o: trainer/cli/ranks_mpi.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MPI_CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.cu $(HEADERS)
	@mkdir -p $(dir $@)
	$(NVCC) -O2 $(NVCC_ARCH) -Xcompiler -fPIC $(INCLUDES) $(filter -DIMGSET_HAVE_%,$(CFLAGS)) -c $< -o $@

$(BUILD)/libimgset.a: $(LIB_OBJ) $(CU_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/imgset: $(CLI_OBJ) $(BUILD)/libimgset.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libimgset.a $(LDLIBS) $(MPI_LIBS)

$(BUILD)/test/%: test/unit/%.c test/unit/tap.h $(BUILD)/libimgset.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itest/unit -o $@ $< $(BUILD)/libimgset.a $(LDLIBS)
$(BUILD)/test/%: test/gpu/%.c test/unit/tap.h $(BUILD)/libimgset.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itest/unit -o $@ $< $(BUILD)/libimgset.a $(LDLIBS)

# The GPU tests and the CLI again (test_gpu_emu, test_gpu_train_emu, imgset_emu for
# test/e2e/test_gpu_emu.sh), with the .cu files compiled as C++ against the host emulation of
# the CUDA runtime and cuBLAS in test/gpu/emu (the device's grid, GPU_THREADS threads a block,
# __syncthreads a barrier; see loaders/gpu_launch.h): the loader's GPU path, the GPU executor
# and their kernels checked against the CPU on every machine, GPU or not. test_emu checks the
# emulation itself.
EMU_CXXFLAGS := -O1 -g -std=c++17 -fPIC -DIMGSET_CUDA_EMULATION -Itest/gpu/emu $(INCLUDES) \
                $(filter-out -I$(CUDA_HOME)/include,$(filter -DIMGSET_HAVE_% -I%,$(CFLAGS)))
EMU_OBJ := $(CU_SRC:%.cu=$(BUILD)/emuobj/%.o) $(BUILD)/emuobj/emu.o
$(BUILD)/emuobj/%.o: %.cu $(HEADERS) $(wildcard test/gpu/emu/*.h)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -x c++ -c $< -o $@
$(BUILD)/emuobj/emu.o: test/gpu/emu/emu.cpp $(wildcard test/gpu/emu/*.h)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -c $< -o $@
$(BUILD)/imgset_emu: $(CLI_OBJ) $(LIB_OBJ) $(EMU_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(filter-out -lcudart -lcublas,$(LDLIBS)) $(MPI_LIBS)
$(BUILD)/test/test_emu: test/gpu/emu/test_emu.cpp test/unit/tap.h $(BUILD)/emuobj/emu.o
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -Itest/unit -o $@ $< $(BUILD)/emuobj/emu.o \
	    $(filter-out -lcudart -lcublas,$(LDLIBS))
$(BUILD)/test/%_emu: test/gpu/%.c test/unit/tap.h $(LIB_OBJ) $(EMU_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itest/unit -o $@ $< $(LIB_OBJ) $(EMU_OBJ) \
	    $(filter-out -lcudart -lcublas,$(LDLIBS))

# The Python extension module: our objects, libimgset.a's symbols kept inside the module.
PY_CFLAGS := $(CFLAGS) -I$(PY_INCLUDE) -fvisibility=hidden
PY_LINK   := -shared -Wl,--exclude-libs,ALL
$(BUILD)/pyobj/%.o: python/src/%.c $(wildcard python/src/*.h) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(PY_CFLAGS) -c $< -o $@
$(PY_MODULE): $(PY_OBJ) $(PY_CLI_OBJ) $(BUILD)/libimgset.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PY_LINK) -o $@ $(PY_OBJ) $(PY_CLI_OBJ) $(BUILD)/libimgset.a $(LDLIBS)
$(BUILD)/python/%.py: python/%.py
	@mkdir -p $(dir $@)
	cp $< $@
$(BUILD)/pyemuobj/%.o: python/src/%.c $(wildcard python/src/*.h) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(PY_CFLAGS) -DIMGSET_MODULE_NAME_BARE=_imgset_emu -c $< -o $@
$(PY_EMU): $(PY_OBJ:$(BUILD)/pyobj/%=$(BUILD)/pyemuobj/%) $(PY_CLI_OBJ) $(LIB_OBJ) $(EMU_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PY_LINK) -o $@ $^ $(filter-out -lcudart -lcublas,$(LDLIBS))

# For python/setup.py (pip install ./python): build the library, then print the flags to
# compile against it and link it.
python-flags: $(BUILD)/libimgset.a $(PY_CLI_OBJ)
	@echo "CFLAGS $(addprefix -I$(CURDIR)/,loaders trainer/cli) \
	    $(filter -I/% -DIMGSET_HAVE_%,$(CFLAGS)) -fvisibility=hidden"
	@echo "LDFLAGS -Wl,--exclude-libs,ALL $(abspath $(PY_CLI_OBJ) $(BUILD)/libimgset.a) $(LDLIBS)"

# Benchmark programs (test/bench/*.c): run by hand, never by make check. allreduce.c is MPI's.
$(BUILD)/bench/allreduce: test/bench/allreduce.c $(BUILD)/libimgset.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MPI_CFLAGS) -o $@ $< $(BUILD)/libimgset.a $(LDLIBS) $(MPI_LIBS)
$(BUILD)/bench/%: test/bench/%.c $(BUILD)/libimgset.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libimgset.a $(LDLIBS)

# C tests that need a PostgreSQL server; test/pg/run.sh runs them against its cluster.
$(BUILD)/pgtest/%: test/pg/%.c test/unit/tap.h $(BUILD)/libimgset.a extension/imgtensor_wire.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itest/unit -o $@ $< $(BUILD)/libimgset.a $(LDLIBS)

# Fuzz targets: libFuzzer + AddressSanitizer, the library compiled again with clang (C only,
# without the CUDA parts).
FUZZ_CFLAGS  := $(filter-out -O2 -DIMGSET_HAVE_CUDA -Wno-format-truncation,$(CFLAGS)) -O1
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/fuzzobj/%.o)
$(BUILD)/fuzzobj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address -c $< -o $@
$(BUILD)/fuzz/%: test/fuzz/%.c $(FUZZ_LIB_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address -o $@ $< \
	    $(FUZZ_LIB_OBJ) $(filter-out -lcudart -lcublas -lstdc++,$(LDLIBS))

# The PostgreSQL extension is built by PGXS in extension/.
extension:
ifeq ($(HAVE_PGXS),yes)
	$(MAKE) -C extension PG_CONFIG=$(PG_CONFIG)
else
	@echo "imgset build: extension left out (no postgresql-server-dev)"
endif

install: all install-python
	$(MAKE) -C extension PG_CONFIG=$(PG_CONFIG) install

# The Python package where /usr/bin/python3 finds it (its site folder, /usr/local/lib/python3*).
install-python: $(PY_MODULE) $(PY_FILES)
ifneq ($(PY_MODULE),)
	install -d $(DESTDIR)$(PY_SITE)/imgset
	install -m 644 $(PY_FILES) $(PY_MODULE) $(DESTDIR)$(PY_SITE)/imgset/
else
	@echo "imgset: the Python package is not built (python3-dev and numpy for $(PYTHON))"
endif

# The benchmark's embedded cluster needs the extension installed: as root, install it.
install-if-root:
ifeq ($(HAVE_PGXS),yes)
	@if [ "$$(id -u)" -eq 0 ]; then $(MAKE) --no-print-directory -s -C extension PG_CONFIG=$(PG_CONFIG) install; \
	 else echo "imgset: not root; the pg store needs 'sudo make install' first"; fi
endif

deps:
	@./deps.sh

# The tests install nothing into the system: their clusters run a private installation that
# holds this build's extension (test/pgtree.sh, made by test/run.sh).
check: deps
	@$(MAKE) --no-print-directory all
	@test/run.sh

demo: deps
	@$(MAKE) --no-print-directory all install-if-root
	@test/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all install-if-root
	$(BUILD)/imgset bench --out $(BUILD)/bench

clean:
	rm -rf $(BUILD)
	-$(MAKE) -C extension clean
