/* Stream mode: not implemented yet. */
#include <stdio.h>

#include "run.h"

int ds_sim_run_stream(const ds_sim_stream_opts_t *o, char *errstr, size_t errstr_size)
{
    (void)o;
    snprintf(errstr, errstr_size, "--stream is not implemented yet");
    return -1;
}
