/* DetReg records, as a file holds them, into Arrow column buffers in one pass over the records.
 *
 * The records may be in any of the file layouts (LP64 or ILP32, either byte order): the
 * columns come out in native order and LP64 widths, as nightlake.detrends.detreg.format.RECORD_DTYPE
 * holds them in memory.
 *
 * Built into _columns.so by hatch_build.py when nightlake is installed, and loaded with ctypes
 * (no Python API here). nightlake.detrends.detreg.format falls back to numpy and pyarrow when the
 * library is missing; the tests compare both paths, and the structs below with numpy's dtypes.
 *
 * Why C: numpy and pyarrow have no fast "length up to the first NUL" over fixed-width fields
 * in strided records (pyarrow's conversion of an S254 field takes ~90 ns a record; memchr
 * does it at memory speed), and each numpy field copy walks all 30 MB of a 100,000-record
 * file again, where one loop walks it once.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The two record layouts with fixed-width types: LP64 (RECORD_DTYPE, what nightlake keeps in
 * memory and writes) and ILP32 (4-byte longs). Either may come in the other byte order. */
typedef struct {
    uint64_t tstart, tstop, treg;
    float sigma, clipsigma;
    int32_t type, filter, ccd;
    char filename[254];
    int8_t flag1, flag2;
} Record64;

typedef struct {
    uint32_t tstart, tstop, treg;
    float sigma, clipsigma;
    int32_t type, filter, ccd;
    char filename[254];
    int8_t flag1, flag2;
} Record32;

#define LAYOUT_OF(T) {                                                                    \
    offsetof(T, tstart), offsetof(T, tstop), offsetof(T, treg), offsetof(T, sigma),         \
    offsetof(T, clipsigma), offsetof(T, type), offsetof(T, filter), offsetof(T, ccd),       \
    offsetof(T, filename), offsetof(T, flag1), offsetof(T, flag2), sizeof(T)}

/* The layout this library was compiled with (ilp32: 0 or 1): offsets of the 11 fields, then
 * the size; the loader checks them against numpy's dtypes. */
void nl_record_layout(int32_t ilp32, int64_t *out)
{
    const int64_t lp64[12] = LAYOUT_OF(Record64), i32[12] = LAYOUT_OF(Record32);
    memcpy(out, ilp32 ? i32 : lp64, sizeof(lp64));
}

typedef struct {  /* where nl_columns writes: one array per field */
    uint64_t *tstart, *tstop, *treg;
    float *sigma, *clipsigma;
    int32_t *type, *filter, *ccd;
    int32_t *offsets;  /* n + 1 offsets of the filenames in names */
    uint8_t *names;    /* room for n * 253 bytes */
    int8_t *flag1, *flag2;
} Columns;

static inline uint32_t same32(uint32_t v) { return v; }
static inline uint64_t same64(uint64_t v) { return v; }
static inline uint32_t swap32(uint32_t v) { return __builtin_bswap32(v); }
static inline uint64_t swap64(uint64_t v) { return __builtin_bswap64(v); }

static inline float float_of(uint32_t (*order)(uint32_t), float value)
{
    uint32_t bits;
    memcpy(&bits, &value, 4);
    bits = order(bits);
    memcpy(&value, &bits, 4);
    return value;
}

static inline int32_t int_of(uint32_t (*order)(uint32_t), int32_t value)
{
    return (int32_t)order((uint32_t)value);
}

/* ILP32 keeps 32-bit times: an all-bits-set tstop (open-ended) stays all bits set in 64. */
static inline uint64_t wide_tstop(uint32_t t) { return t == UINT32_MAX ? UINT64_MAX : t; }

/* One loop per layout and byte order, the conversions inlined: a table-driven loop pays a
 * branch per field and lost to numpy. Returns the bytes of names written or -1 (a filename
 * without NUL). */
#define COLUMNS_LOOP(NAME, T, ORDER32, TIME)                                                \
static int64_t NAME(const T *records, int64_t n, const Columns *out, int64_t *bad)        \
{                                                                                          \
    int64_t total = 0;                                                                     \
    out->offsets[0] = 0;                                                                   \
    for (int64_t i = 0; i < n; i++) {                                                      \
        const T *r = records + i;                                                          \
        out->tstart[i] = TIME(r->tstart);                                                  \
        out->tstop[i] = TIME##_STOP(r->tstop);                                             \
        out->treg[i] = TIME(r->treg);                                                      \
        out->sigma[i] = float_of(ORDER32, r->sigma);                                       \
        out->clipsigma[i] = float_of(ORDER32, r->clipsigma);                               \
        out->type[i] = int_of(ORDER32, r->type);                                           \
        out->filter[i] = int_of(ORDER32, r->filter);                                       \
        out->ccd[i] = int_of(ORDER32, r->ccd);                                             \
        out->flag1[i] = r->flag1;                                                          \
        out->flag2[i] = r->flag2;                                                          \
        const char *nul = memchr(r->filename, 0, sizeof(r->filename));                    \
        if (nul == NULL) {                                                                 \
            *bad = i;                                                                      \
            return -1;                                                                     \
        }                                                                                  \
        size_t len = (size_t)(nul - r->filename);                                          \
        memcpy(out->names + total, r->filename, len);                                      \
        total += (int64_t)len;                                                             \
        out->offsets[i + 1] = (int32_t)total;                                              \
    }                                                                                      \
    return total;                                                                          \
}

#define T64_SAME(v) same64(v)
#define T64_SAME_STOP(v) same64(v)
#define T64_SWAP(v) swap64(v)
#define T64_SWAP_STOP(v) swap64(v)
#define T32_SAME(v) ((uint64_t)same32(v))
#define T32_SAME_STOP(v) wide_tstop(same32(v))
#define T32_SWAP(v) ((uint64_t)swap32(v))
#define T32_SWAP_STOP(v) wide_tstop(swap32(v))

COLUMNS_LOOP(columns_lp64, Record64, same32, T64_SAME)
COLUMNS_LOOP(columns_lp64_swapped, Record64, swap32, T64_SWAP)
COLUMNS_LOOP(columns_ilp32, Record32, same32, T32_SAME)
COLUMNS_LOOP(columns_ilp32_swapped, Record32, swap32, T32_SWAP)

/* Every field of n records (layout: 0 LP64, 1 ILP32; swapped: 1 if their byte order is not
 * this machine's) into `out` in native order and LP64 widths, filenames cut at their first
 * NUL and written back to back. Returns the bytes of names written, or -1 when a filename has
 * no NUL (its record in *bad). *ascii is 1 when every name byte is below 0x80 (valid UTF-8
 * without checking). */
int64_t nl_columns(const void *records, int64_t n, int32_t ilp32, int32_t swapped,
                   const Columns *out, int64_t *bad, int32_t *ascii)
{
    int64_t total;
    if (ilp32)
        total = swapped ? columns_ilp32_swapped(records, n, out, bad)
                        : columns_ilp32(records, n, out, bad);
    else
        total = swapped ? columns_lp64_swapped(records, n, out, bad)
                        : columns_lp64(records, n, out, bad);
    if (total < 0)
        return total;
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
