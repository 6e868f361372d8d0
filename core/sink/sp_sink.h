/* The sinks of the core (the Kafka one is the executable's, run/):
 * stdout, rolling files and Parquet, and the in-memory one of the test
 * driver. sp_sink.c makes them for the FFI functions of sp_ffi.h. */
#ifndef SP_SINK_H
#define SP_SINK_H

#include "sp_ctx.h"

/* The sinks sp_ctx makes itself. */
int sp_sink_stdout_open(sp_sink *s, FILE *f, const char **err);
int sp_sink_files_open(sp_sink *s, const sp_file_opts *o, const char **err);
/* Takes new options for an open file sink (a reload): when its format,
 * schema or Parquet settings change, the open file is published first. */
int sp_sink_files_update(sp_sink *s, const sp_file_opts *o, const char **err);
int sp_sink_mem_open(sp_sink *s, const char **err);

#endif
