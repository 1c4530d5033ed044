/* memfd seals and FD_CLOEXEC on the running kernel (root: nr_hugepages 4, restored). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <linux/falloc.h>
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif
#define H (2UL << 20)
#define R(tag, x) do { errno = 0; long _r = (long)(x); printf("%s ret=%ld errno=%d\n", tag, _r == -1 ? -1L : _r, _r == -1 ? errno : 0); } while (0)
static void setnr(const char *v) { int f = open("/proc/sys/vm/nr_hugepages", O_WRONLY); write(f, v, strlen(v)); close(f); }
int main(void) {
	setvbuf(stdout, NULL, _IONBF, 0);
	char old[32] = {0}; int of = open("/proc/sys/vm/nr_hugepages", O_RDONLY); read(of, old, sizeof old - 1); close(of);
	setnr("4");
	int a = memfd_create("a", 0);
	int b = memfd_create("b", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	int c = memfd_create("c", MFD_NOEXEC_SEAL);
	R("get_a", fcntl(a, F_GET_SEALS));
	R("get_b", fcntl(b, F_GET_SEALS));
	R("get_c", fcntl(c, F_GET_SEALS));
	R("getfd_a", fcntl(a, F_GETFD));
	R("getfd_b", fcntl(b, F_GETFD));
	R("setfd_a", fcntl(a, F_SETFD, FD_CLOEXEC));
	R("getfd_a2", fcntl(a, F_GETFD));
	R("add_a", fcntl(a, F_ADD_SEALS, F_SEAL_SHRINK));
	R("add_bad", fcntl(b, F_ADD_SEALS, 0x100));
	R("ftruncate_b", ftruncate(b, 4 * 4096));
	R("add_shrink", fcntl(b, F_ADD_SEALS, F_SEAL_SHRINK));
	R("shrink", ftruncate(b, 4096));
	R("grow", ftruncate(b, 8 * 4096));
	R("add_grow", fcntl(b, F_ADD_SEALS, F_SEAL_GROW));
	R("grow2", ftruncate(b, 16 * 4096));
	R("pwrite_past", pwrite(b, "x", 1, 8 * 4096));
	R("pwrite_in", pwrite(b, "x", 1, 0));
	R("falloc_past", fallocate(b, 0, 0, 9 * 4096));
	R("falloc_in", fallocate(b, 0, 0, 4096));
	char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, b, 0);
	R("add_write_mapped", fcntl(b, F_ADD_SEALS, F_SEAL_WRITE));
	char *ro = mmap(NULL, 4096, PROT_READ, MAP_SHARED, b, 0);
	R("add_write_romapped", fcntl(b, F_ADD_SEALS, F_SEAL_WRITE));
	munmap(m, 4096); munmap(ro, 4096);
	R("add_write", fcntl(b, F_ADD_SEALS, F_SEAL_WRITE));
	R("get_b2", fcntl(b, F_GET_SEALS));
	R("pwrite_sealed", pwrite(b, "x", 1, 0));
	R("punch_sealed", fallocate(b, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096));
	R("mmap_shared_rw", (long)mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, b, 0));
	char *r2 = mmap(NULL, 4096, PROT_READ, MAP_SHARED, b, 0);
	printf("mmap_shared_ro ok=%d\n", r2 != MAP_FAILED);
	R("mprotect_rw", mprotect(r2, 4096, PROT_READ | PROT_WRITE));
	char *pv = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, b, 0);
	printf("mmap_private ok=%d\n", pv != MAP_FAILED);
	pv[0] = 'p';
	R("add_seal", fcntl(b, F_ADD_SEALS, F_SEAL_SEAL));
	R("add_after_seal", fcntl(b, F_ADD_SEALS, F_SEAL_EXEC));
	/* future write: an existing mapping stays writable */
	int d = memfd_create("d", MFD_ALLOW_SEALING);
	ftruncate(d, 4096);
	char *dm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, d, 0);
	R("add_future", fcntl(d, F_ADD_SEALS, F_SEAL_FUTURE_WRITE));
	dm[0] = 'f';
	printf("future old_mapping_write ok data=%c\n", dm[0]);
	R("future_pwrite", pwrite(d, "x", 1, 0));
	R("future_mmap_rw", (long)mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, d, 0));
	int rd = open("/proc/self/fd/3", O_RDONLY);
	R("add_rdonly_fd", fcntl(rd, F_ADD_SEALS, F_SEAL_GROW));
	R("get_rdonly_fd", fcntl(rd, F_GET_SEALS));
	int t = open("/tmp/vmsim-seal-probe", O_RDWR | O_CREAT, 0600);
	R("get_ext4", fcntl(t, F_GET_SEALS));
	R("add_ext4", fcntl(t, F_ADD_SEALS, F_SEAL_GROW));
	unlink("/tmp/vmsim-seal-probe");
	int s = open("/dev/shm/vmsim-seal-probe", O_RDWR | O_CREAT, 0600);
	R("get_tmpfs", fcntl(s, F_GET_SEALS));
	R("add_tmpfs", fcntl(s, F_ADD_SEALS, F_SEAL_GROW));
	unlink("/dev/shm/vmsim-seal-probe");
	R("get_badfd", fcntl(999, F_GET_SEALS));
	/* hugetlb memfd */
	int h = memfd_create("h", MFD_HUGETLB | MFD_ALLOW_SEALING);
	R("h_get", fcntl(h, F_GET_SEALS));
	R("h_ftruncate", ftruncate(h, 2 * H));
	R("h_falloc", fallocate(h, 0, 0, H));
	R("h_add", fcntl(h, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE));
	R("h_shrink", ftruncate(h, H));
	R("h_grow", ftruncate(h, 4 * H));
	R("h_falloc_past", fallocate(h, 0, 0, 3 * H));
	R("h_punch", fallocate(h, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, H));
	R("h_mmap_rw", (long)mmap(NULL, H, PROT_READ | PROT_WRITE, MAP_SHARED, h, 0));
	int h2 = memfd_create("h2", MFD_HUGETLB);
	R("h2_get", fcntl(h2, F_GET_SEALS));
	close(h); close(h2);
	setnr(old);
	return 0;
}
