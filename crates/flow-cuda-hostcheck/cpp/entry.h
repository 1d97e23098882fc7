// The host entry points' one macro: `FLOW_HOST_ENTRY(name, (params), (args))` declares the
// kernel `name_<suffix>` (defined in its `.cu`) and defines
// `host_name_<suffix>(grid, block, dynamic_shared_bytes, params...)`, which runs it through
// `flow_host::launch`. Compiled with the same `FLOW_T` and `FLOW_SUFFIX` as the kernels; the
// Rust side declares the same functions in `src/ffi.rs`.
#pragma once

#include "common.cuh"

#define FLOW_UNPAREN(...) __VA_ARGS__

#define FLOW_HOST_ENTRY(name, params, args)                                                  \
    FLOW_KERNEL void FLOW_NAME(name) params;                                                 \
    extern "C" void FLOW_NAME(host_##name)(unsigned int grid, unsigned int block,            \
                                           u64 dynamic_shared_bytes, FLOW_UNPAREN params) {  \
        flow_host::launch(grid, block, dynamic_shared_bytes, FLOW_NAME(name),               \
                          FLOW_UNPAREN args);                                                \
    }
