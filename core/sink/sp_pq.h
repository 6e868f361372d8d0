/* sp_parquet: a Parquet file writer for sp_schema rows (flat columns,
 * nested structs, lists of plain values). Rows are buffered column by
 * column and written as a row group when the buffer reaches its size;
 * each column chunk is dictionary-encoded when its distinct values fit a
 * dictionary, else plain; pages are compressed with snappy or zstd. Each
 * column chunk carries its statistics (min, max, null count), which
 * readers use to skip row groups. The layout is Parquet 1.0 (data page
 * v1, PLAIN_DICTIONARY), which every reader reads. */
#ifndef SP_PARQUET_H
#define SP_PARQUET_H

#include <stdint.h>
#include <stdio.h>

#include "sp_ffi.h" /* SP_CODEC_* */
#include "sp_schema.h"

typedef struct sp_pq_opts {
    int codec;               /* SP_CODEC_* */
    int dictionary;          /* 1: dictionary-encode where it fits */
    int64_t row_group_bytes; /* buffered bytes that make a row group */
    int64_t row_group_rows;  /* 0: no row limit */
    int64_t page_bytes;      /* values per data page, about */
    const uint8_t *omit;     /* per schema node: 1 leaves the top-level field
                                out of the file (Hive-style partition
                                columns); NULL: none */
} sp_pq_opts;

typedef struct sp_pq_writer sp_pq_writer;

/* Starts a file on f (writes the magic). The schema must outlive the
 * writer; rows come from its converted values. */
sp_pq_writer *sp_pq_create(const sp_schema *s, const sp_pq_opts *o, FILE *f,
                           const char **err);
/* Appends the schema's last converted value as a row. */
int sp_pq_append(sp_pq_writer *w, const char **err);
/* Writes the buffered rows as a row group, then the footer. */
int sp_pq_finish(sp_pq_writer *w, const char **err);
void sp_pq_destroy(sp_pq_writer *w);
/* Bytes written to the file plus those buffered. */
int64_t sp_pq_size(const sp_pq_writer *w);
int64_t sp_pq_rows(const sp_pq_writer *w);

/* The RLE/bit-packing hybrid of levels and dictionary indexes (exposed
 * for the unit tests). */
int sp_pq_rle(sp_buf *out, const uint32_t *v, size_t n, int bit_width);

#endif
