#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <string.h>
#include <stdlib.h>
int main(int argc, char **argv) {
	char *a = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(a, 1, 4 * 4096);
	mprotect((void *)0x10000, 4096, PROT_READ);
	madvise(a, 4096, MADV_DONTNEED);
	madvise(a, 4096, 12345);
	char *b = mremap(a, 4 * 4096, 8 * 4096, MREMAP_MAYMOVE);
	mremap(b, 8 * 4096, 8 * 4096, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, b + (1 << 20));
	syscall(SYS_mlock2, b, 4096, MLOCK_ONFAULT);
	mlock(b, 4096);
	munlock(b, 4096);
	unsigned char vec[2];
	mincore(b, 8192, vec);
	syscall(SYS_brk, 0);
	syscall(SYS_munmap, b, 4096);
	mmap((void *)0x10000, 4096, PROT_NONE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_POPULATE, -1, 0);
	mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (21 << MAP_HUGE_SHIFT), -1, 0);
	mmap(NULL, 4096, 0x100, 0x80000000, -1, 0);
	pid_t c = syscall(SYS_fork);
	if (c == 0) { b[0] = 2; syscall(SYS_exit_group, 3); }
	int st;
	syscall(SYS_wait4, c, &st, 0, NULL);
	pid_t d = fork();
	if (d == 0) { _exit(0); }
	waitpid(d, NULL, 0);
	mprotect(b + 8192, 4096, PROT_READ);
	if (argc > 1 && argv[1][0] == 'b') {
		int fd = memfd_create("x", 0); char *m = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, 0);
		return m[0];   /* SIGBUS */
	}
	if (argc > 1) { b[8192] = 1; }
	return 0;
}
