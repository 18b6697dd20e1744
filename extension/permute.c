/* permute.c — the epoch shuffle: compiles the client's loaders/permute.c and sampler.c (and
 * the error buffer sampler_init reports through) into the extension, so imgset_batch() and
 * the C loader share one rule for which images form batch b of epoch e for rank r. */
#include "postgres.h"

#include "../loaders/error.c"
#include "../loaders/permute.c"
#include "../loaders/sampler.c"
