// Host entry points of the probes in `host_probe.cu`.
#include "entry.h"

FLOW_HOST_ENTRY(probe_ids, (unsigned int* out), (out))
FLOW_HOST_ENTRY(probe_shuffles, (T * out, int width), (out, width))
FLOW_HOST_ENTRY(probe_shared, (T * out), (out))
FLOW_HOST_ENTRY(probe_atomic, (T * sum, unsigned int* count), (sum, count))
