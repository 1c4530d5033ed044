#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <signal.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
static long pa(unsigned long f, unsigned long v) { long r = syscall(SYS_pkey_alloc, f, v); return r < 0 ? -errno : r; }
static long pf(int k) { long r = syscall(SYS_pkey_free, k); return r < 0 ? -errno : r; }
static long pm(void *a, size_t l, int prot, int k) { long r = syscall(SYS_pkey_mprotect, a, l, prot, k); return r < 0 ? -errno : r; }
#define P(e) printf("%s = %ld\n", #e, (long)(e))
int main(int argc, char **argv) {
	setvbuf(stdout, 0, _IONBF, 0);
	if (argc > 1) { P(pa(0, 0)); P(pa(0, 0)); return 0; }
	char *x = mmap(0, 8192, PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
	P(*(volatile char *)x);
	P(pm(x, 4096, PROT_READ, 0)); P(pm(x, 4096, PROT_READ, 1)); P(pm(x, 4096, PROT_READ, -1));
	P(pf(0)); P(pf(1)); P(pf(-1));
	P(pa(1, 0)); P(pa(0, 4));
	pid_t c = fork();
	if (!c) { printf("child1: "); P(pa(0, 0)); P(pa(0, 0)); _exit(0); }
	waitpid(c, 0, 0);
	P(pa(0, 1)); P(pa(0, 0)); P(pa(0, 0));
	P(pf(0)); P(pm(x, 4096, PROT_READ, 0));
	c = fork();
	if (!c) { printf("child2: "); P(pa(0, 0)); execl("/proc/self/exe", argv[0], "e", (char*)0); _exit(1); }
	waitpid(c, 0, 0);
	return 0;
}
