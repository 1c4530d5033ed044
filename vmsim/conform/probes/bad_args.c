/*
 * bad_args.c - errno of memory syscalls given wrapped / out-of-range integer arguments,
 * as a C caller passes them (size_t -4096, an address at the top of the 64-bit space).
 * gcc -O1 -o bad_args bad_args.c && ./bad_args > bad_args-6.18.txt
 * tests/test_syscall_args.py runs the same calls on vmsim and compares.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdint.h>
#define R(name, expr) do { errno = 0; long r_ = (long)(expr); printf("%s %s\n", name, r_ == -1 ? strerrorname_np(errno) : "ok"); } while (0)
int main(void) {
  char *a = mmap(0, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  unsigned char vec[16];
  memset(a, 1, 16 * 4096);
  R("mmap_len_-4096", syscall(SYS_mmap, 0, -4096L, 3, 0x22, -1, 0));
  R("mmap_len_-1", syscall(SYS_mmap, 0, -1L, 3, 0x22, -1, 0));
  R("mmap_len_2^63", syscall(SYS_mmap, 0, 1UL << 63, 3, 0x22, -1, 0));
  R("mmap_len_2^47", syscall(SYS_mmap, 0, 1UL << 47, 3, 0x22 | MAP_NORESERVE, -1, 0));
  R("mmap_fixed_-4096", syscall(SYS_mmap, -4096L, 4096, 3, 0x32, -1, 0));
  R("mmap_fixed_taskend", syscall(SYS_mmap, (1UL << 47) - 4096, 4096, 3, 0x32, -1, 0));
  R("mmap_fixed_at_taskend", syscall(SYS_mmap, (1UL << 47), 4096, 3, 0x32, -1, 0));
  R("mmap_hint_-4096", syscall(SYS_mmap, -4096L, 4096, 3, 0x22, -1, 0));
  R("mmap_off_-4096", syscall(SYS_mmap, 0, 8192, 3, 0x22, -1, -4096L));
  R("mmap_off_1", syscall(SYS_mmap, 0, 8192, 3, 0x22, -1, 1));
  R("mmap_prot_-1", syscall(SYS_mmap, 0, 4096, -1L, 0x22, -1, 0));
  R("mmap_prot_int_-1", mmap(0, 4096, -1, 0x22, -1, 0));
  R("mmap_flags_type0", syscall(SYS_mmap, 0, 4096, 3, 0x20, -1, 0));
  R("mmap_fixed_over_-4096len", syscall(SYS_mmap, a, -4096L, 3, 0x32, -1, 0));
  R("munmap_len_-4096", syscall(SYS_munmap, a, -4096L));
  R("munmap_addr_-4096", syscall(SYS_munmap, -4096L, 4096));
  R("munmap_len_0", syscall(SYS_munmap, a, 0));
  R("mprotect_len_-4096", syscall(SYS_mprotect, a, -4096L, 1));
  R("mprotect_addr_-4096", syscall(SYS_mprotect, -4096L, 4096, 1));
  R("mprotect_prot_-1", syscall(SYS_mprotect, a, 4096, -1L));
  R("madvise_len_-4096", syscall(SYS_madvise, a, -4096L, 4));
  R("madvise_addr_-4096", syscall(SYS_madvise, -4096L, 4096, 4));
  R("madvise_adv_-1", syscall(SYS_madvise, a, 4096, -1L));
  R("mlock_len_-4096", syscall(SYS_mlock, a, -4096L));
  R("mlock_len_-1", syscall(SYS_mlock, a, -1L));
  R("mlock_addr_-4096", syscall(SYS_mlock, -4096L, 4096));
  R("mlock2_flags_-1", syscall(SYS_mlock2, a, 4096, -1L));
  R("munlock_addr_-4096", syscall(SYS_munlock, -4096L, 4096));
  R("munlock_len_-1", syscall(SYS_munlock, a, -1L));
  R("mremap_old_-4096", syscall(SYS_mremap, a, -4096L, 4096, 1, 0));
  R("mremap_new_-4096", syscall(SYS_mremap, a, 4096, -4096L, 1, 0));
  R("mremap_addr_-4096", syscall(SYS_mremap, -4096L, 4096, 4096, 0, 0));
  R("mremap_flags_-1", syscall(SYS_mremap, a, 4096, 8192, -1L, 0));
  R("mremap_new_2^47", syscall(SYS_mremap, a, 4096, 1UL << 47, 1, 0));
  R("mincore_len_-4096", syscall(SYS_mincore, a, -4096L, vec));
  R("mincore_addr_-4096", syscall(SYS_mincore, -4096L, 4096, vec));
  R("mincore_addr_taskend", syscall(SYS_mincore, (1UL << 47) - 4096, 4096, vec));
  long b0 = syscall(SYS_brk, 0);
  printf("brk_-4096 %s\n", syscall(SYS_brk, -4096L) == b0 ? "unchanged" : "moved");
  printf("brk_2^47 %s\n", syscall(SYS_brk, 1UL << 47) == b0 ? "unchanged" : "moved");
  printf("data %s\n", a[0] == 1 && a[16 * 4096 - 1] == 1 ? "intact" : "changed");
  return 0;
}
