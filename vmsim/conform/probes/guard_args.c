/*
 * guard_args.c - guard regions against mlock, MADV_POPULATE_WRITE and mincore; shared anon.
 * gcc -o guard_args guard_args.c && ./guard_args > guard_args-6.18.txt
 * tests/test_guard_regions.py runs the same calls on vmsim and compares.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#define R(name, expr) do { errno = 0; long r_ = (long)(expr); printf("%s %s\n", name, r_ == -1 ? strerrorname_np(errno) : "ok"); } while (0)
int main(void) {
  char *a = mmap(0, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  R("install", madvise(a + 4 * 4096, 4 * 4096, 102));
  R("mlock_over_guard", mlock(a, 16 * 4096));
  R("populate_write", madvise(a, 16 * 4096, 23));
  R("mlock2_onfault_over_guard", mlock2(a, 16 * 4096, MLOCK_ONFAULT));
  R("munlock", munlock(a, 16 * 4096));
  char vec[16];
  R("mincore", mincore(a, 16 * 4096, vec));
  printf("vec %d%d%d%d%d\n", vec[0], vec[3], vec[4], vec[7], vec[8]);
  char *s = mmap(0, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  memset(s, 1, 4 * 4096);
  R("install_shared", madvise(s, 2 * 4096, 102));
  R("mincore_shared", mincore(s, 4 * 4096, vec));
  printf("vec %d%d%d%d\n", vec[0], vec[1], vec[2], vec[3]);
  R("install_len0", madvise(a, 0, 102));
  R("remove_unmapped", madvise((char *)0x100000000000, 4096, 103));
  return 0;
}
