/* A native DetReg client for the interoperability tests (compiled by tests/detreg/conftest.py).
 *
 *   detreg_tool layout          print sizeof(DetReg) and the offset of every field
 *   detreg_tool write FILE N    write a database of N deterministic records
 *   detreg_tool write-dirty FILE N
 *                               the same, but every struct starts filled with 0xAB bytes
 *                               (padding and the bytes after each filename's NUL are garbage)
 *   detreg_tool write-short FILE N DECLARED
 *                               N records, but NRECORD/NAXIS1 declare only DECLARED of them
 *                               (a writer that miscounts: readers must not drop the rest)
 *   detreg_tool dump FILE       print every record, one per line, tab-separated
 *
 * It uses the struct exactly as the issue gives it and native byte order, so on x86-64 it
 * reads and writes LP64 little-endian files.
 */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  unsigned long int tstart;
  unsigned long int tstop;
  unsigned long int treg;
  float sigma, clipsigma;
  int type;
  int filter;
  int ccd;
  char filename[254];
  char flag1, flag2;
} DetReg;

static void card(FILE *f, const char *text) {
  char buf[81];
  snprintf(buf, sizeof buf, "%-80s", text);
  fwrite(buf, 1, 80, f);
}

static void make_record(DetReg *r, long i, int dirty) {
  memset(r, dirty ? 0xAB : 0, sizeof *r);
  r->tstart = 1400000000UL + (unsigned long)i * 86400UL;
  r->tstop = (i % 3 == 0) ? ULONG_MAX : r->tstart + 30UL * 86400UL;
  r->treg = 1500000000UL + (unsigned long)i;
  r->sigma = 1.0f + 0.25f * (float)i;
  r->clipsigma = 0.5f * (float)i;
  r->type = 1 + (int)(i % 5);
  r->filter = (r->type == 2) ? 30 + (int)i : (r->type == 3 || r->type == 4) ? 1 + (int)(i % 2) : -1;
  r->ccd = 1 + (int)(i % 62);
  if (i == 0) {
    memset(r->filename, 'x', 253);
    r->filename[0] = '/';
    r->filename[253] = '\0';
  } else {
    /* strcpy leaves the bytes after the NUL as they were (garbage when dirty) */
    snprintf(r->filename, sizeof r->filename, "/deep/masters/c%02d/master_%04ld.fits", r->ccd, i);
  }
  r->flag1 = (char)(i % 100 - 50);
  r->flag2 = (char)(i % 7);
}

static int write_db(const char *path, long n, int dirty, long declared) {
  FILE *f = fopen(path, "wb");
  if (!f) { perror(path); return 1; }
  char buf[81];
  long cards = 0;
  card(f, "SIMPLE  =                    T"); cards++;
  card(f, "BITPIX  =                    8"); cards++;
  card(f, "NAXIS   =                    1"); cards++;
  snprintf(buf, sizeof buf, "NAXIS1  = %20ld", declared * (long)sizeof(DetReg)); card(f, buf); cards++;
  card(f, "EXTEND  =                    F"); cards++;
  card(f, "DBTYPE  = 'DETREG  '"); cards++;
  card(f, "DBVERS  =                    1"); cards++;
  snprintf(buf, sizeof buf, "RECSIZE = %20ld", (long)sizeof(DetReg)); card(f, buf); cards++;
  snprintf(buf, sizeof buf, "NRECORD = %20ld", declared); card(f, buf); cards++;
  card(f, "BYTEORD = 'LITTLE  '"); cards++;
  /* no LAYOUT card: readers infer it from RECSIZE */
  card(f, "FILT1   = 'VR DECam c0007 6300.0 2600.0'"); cards++;
  card(f, "FILT2   = 'g DECam SDSS c0001 4720.0 1520.0'"); cards++;
  card(f, "DATE    = '2014-09-01T00:00:00'"); cards++;
  card(f, "END"); cards++;
  for (; cards % 36; cards++) card(f, "");
  for (long i = 0; i < n; i++) {
    DetReg r;
    make_record(&r, i, dirty);
    fwrite(&r, sizeof r, 1, f);
  }
  long data = n * (long)sizeof(DetReg);
  for (; data % 2880; data++) fputc(0, f);
  return fclose(f) != 0;
}

static int dump_db(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) { perror(path); return 1; }
  char c[81];
  long nrecord = -1, recsize = -1, headerlen = 0;
  int little = -1, end = 0;
  c[80] = '\0';
  while (!end && fread(c, 1, 80, f) == 80) {
    headerlen += 80;
    if (strncmp(c, "END     ", 8) == 0) end = 1;
    else if (strncmp(c, "NRECORD =", 9) == 0) nrecord = atol(c + 10);
    else if (strncmp(c, "RECSIZE =", 9) == 0) recsize = atol(c + 10);
    else if (strncmp(c, "BYTEORD =", 9) == 0) little = strstr(c, "'LITTLE") != NULL;
  }
  if (!end || nrecord < 0 || recsize != (long)sizeof(DetReg) || little != 1) {
    fprintf(stderr, "%s: not a native DetReg file (recsize %ld, little %d)\n", path, recsize, little);
    return 1;
  }
  headerlen = (headerlen + 2879) / 2880 * 2880;
  fseek(f, headerlen, SEEK_SET);
  for (long i = 0; i < nrecord; i++) {
    DetReg r;
    if (fread(&r, sizeof r, 1, f) != 1) { fprintf(stderr, "%s: short read\n", path); return 1; }
    printf("%ld\t%lu\t%lu\t%lu\t%.9g\t%.9g\t%d\t%d\t%d\t%d\t%d\t%s\n", i, r.tstart, r.tstop,
           r.treg, r.sigma, r.clipsigma, r.type, r.filter, r.ccd, (int)r.flag1, (int)r.flag2,
           r.filename);
  }
  fclose(f);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "layout") == 0) {
    printf("sizeof %zu\n", sizeof(DetReg));
    printf("tstart %zu\ntstop %zu\ntreg %zu\nsigma %zu\nclipsigma %zu\ntype %zu\n",
           offsetof(DetReg, tstart), offsetof(DetReg, tstop), offsetof(DetReg, treg),
           offsetof(DetReg, sigma), offsetof(DetReg, clipsigma), offsetof(DetReg, type));
    printf("filter %zu\nccd %zu\nfilename %zu\nflag1 %zu\nflag2 %zu\n",
           offsetof(DetReg, filter), offsetof(DetReg, ccd), offsetof(DetReg, filename),
           offsetof(DetReg, flag1), offsetof(DetReg, flag2));
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "write") == 0) return write_db(argv[2], atol(argv[3]), 0, atol(argv[3]));
  if (argc == 4 && strcmp(argv[1], "write-dirty") == 0) return write_db(argv[2], atol(argv[3]), 1, atol(argv[3]));
  if (argc == 5 && strcmp(argv[1], "write-short") == 0)
    return write_db(argv[2], atol(argv[3]), 0, atol(argv[4]));
  if (argc == 3 && strcmp(argv[1], "dump") == 0) return dump_db(argv[2]);
  fprintf(stderr, "usage: %s layout | write FILE N | write-dirty FILE N | write-short FILE N DECLARED | dump FILE\n", argv[0]);
  return 2;
}
