/* DetReg records in memory (nightlake.detreg.format.RECORD_DTYPE) into Arrow column buffers,
 * in one pass over the records.
 *
 * Built into _columns.so by hatch_build.py when nightlake is installed, and loaded with ctypes
 * (no Python API here). nightlake.detreg.format falls back to numpy and pyarrow when the
 * library is missing; the tests compare both paths, and the struct below with RECORD_DTYPE.
 *
 * Why C: numpy and pyarrow have no fast "length up to the first NUL" over fixed-width fields
 * in strided records (pyarrow's conversion of an S254 field takes ~90 ns a record; memchr
 * does it at memory speed), and each numpy field copy walks all 30 MB of a 100,000-record
 * file again, where one loop walks it once.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* RECORD_DTYPE: the LP64 DetReg struct in native byte order, with fixed-width types. */
typedef struct {
    uint64_t tstart, tstop, treg;
    float sigma, clipsigma;
    int32_t type, filter, ccd;
    char filename[254];
    int8_t flag1, flag2;
} Record;

/* The layout this library was compiled with: offsets of the 11 fields, then the size. */
void nl_record_layout(int64_t *out)
{
    const int64_t layout[12] = {
        offsetof(Record, tstart), offsetof(Record, tstop), offsetof(Record, treg),
        offsetof(Record, sigma), offsetof(Record, clipsigma), offsetof(Record, type),
        offsetof(Record, filter), offsetof(Record, ccd), offsetof(Record, filename),
        offsetof(Record, flag1), offsetof(Record, flag2), sizeof(Record)};
    memcpy(out, layout, sizeof(layout));
}

typedef struct {  /* where nl_columns writes: one array per field */
    uint64_t *tstart, *tstop, *treg;
    float *sigma, *clipsigma;
    int32_t *type, *filter, *ccd;
    int32_t *offsets;  /* n + 1 offsets of the filenames in names */
    uint8_t *names;    /* room for n * 253 bytes */
    int8_t *flag1, *flag2;
} Columns;

/* Every field of n records into `out`, filenames cut at their first NUL and written back to
 * back. Returns the bytes of names written, or -1 when a filename has no NUL (its record in
 * *bad). *ascii is 1 when every name byte is below 0x80 (valid UTF-8 without checking). */
int64_t nl_columns(const Record *records, int64_t n, const Columns *out, int64_t *bad,
                   int32_t *ascii)
{
    int64_t total = 0;
    out->offsets[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        const Record *r = records + i;
        out->tstart[i] = r->tstart;
        out->tstop[i] = r->tstop;
        out->treg[i] = r->treg;
        out->sigma[i] = r->sigma;
        out->clipsigma[i] = r->clipsigma;
        out->type[i] = r->type;
        out->filter[i] = r->filter;
        out->ccd[i] = r->ccd;
        out->flag1[i] = r->flag1;
        out->flag2[i] = r->flag2;
        const char *nul = memchr(r->filename, 0, sizeof(r->filename));
        if (nul == NULL) {
            *bad = i;
            return -1;
        }
        size_t len = (size_t)(nul - r->filename);
        memcpy(out->names + total, r->filename, len);
        total += (int64_t)len;
        out->offsets[i + 1] = (int32_t)total;
    }
    uint64_t high = 0;
    int64_t words = total / 8;
    for (int64_t w = 0; w < words; w++) {
        uint64_t chunk;
        memcpy(&chunk, out->names + 8 * w, 8);
        high |= chunk;
    }
    for (int64_t k = 8 * words; k < total; k++)
        high |= out->names[k];
    *ascii = (high & UINT64_C(0x8080808080808080)) == 0;
    return total;
}
