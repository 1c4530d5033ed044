#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <setjmp.h>
#include <unistd.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static sigjmp_buf jb;
static volatile int scode, spkey; static volatile void *saddr;
static void h(int sig, siginfo_t *si, void *uc) {
	scode = si->si_code; saddr = si->si_addr;
	spkey = *(unsigned int *)((char *)&si->si_addr + 2 * sizeof(void *)); /* _pkey after _addr_lsb/pad */
	siglongjmp(jb, 1);
}
static unsigned rdpkru(void) { unsigned eax, edx; asm volatile(".byte 0x0f,0x01,0xee" : "=a"(eax), "=d"(edx) : "c"(0)); return eax; }
static long pa(unsigned long f, unsigned long v) { long r = syscall(SYS_pkey_alloc, f, v); return r < 0 ? -errno : r; }
static long pf(int k) { long r = syscall(SYS_pkey_free, k); return r < 0 ? -errno : r; }
static long pm(void *a, size_t l, int prot, int k) { long r = syscall(SYS_pkey_mprotect, a, l, prot, k); return r < 0 ? -errno : r; }
static void rd(const char *what, volatile char *p) {
	scode = 0; spkey = -1;
	if (!sigsetjmp(jb, 1)) { (void)*p; printf("%s: read ok\n", what); }
	else printf("%s: SIGSEGV code=%d pkey=%d addr_off=%ld\n", what, scode, spkey, (long)((char*)saddr - (char*)p));
}
static void wr(const char *what, volatile char *p) {
	scode = 0; spkey = -1;
	if (!sigsetjmp(jb, 1)) { *p = 1; printf("%s: write ok\n", what); }
	else printf("%s: SIGSEGV code=%d pkey=%d\n", what, scode, spkey);
}
static void pkeyline(void *a) {
	FILE *f = fopen("/proc/self/smaps", "r"); char line[512]; int in = 0;
	char want[32]; snprintf(want, sizeof want, "%lx-", (unsigned long)a);
	while (fgets(line, sizeof line, f)) {
		if (strchr(line, '-') && strncmp(line, want, strlen(want)) == 0) in = 1;
		else if (in && strncmp(line, "ProtectionKey:", 14) == 0) { printf("  %s", line); break; }
	}
	fclose(f);
}
int main(int argc, char **argv) {
	struct sigaction sa = {0}; sa.sa_sigaction = h; sa.sa_flags = SA_SIGINFO; sigaction(SIGSEGV, &sa, 0);
	if (argc > 1) { printf("exec: pkru=%#x alloc=%ld\n", rdpkru(), pa(0, 0)); return 0; }
	printf("start pkru=%#x\n", rdpkru());
	char *x = mmap(0, 8192, PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
	printf("after xonly mmap pkru=%#x\n", rdpkru()); pkeyline(x);
	rd("xonly read", x); wr("xonly write", x);
	char *r = mmap(0, 4096, PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0); pkeyline(r); rd("rx read", r);
	printf("pkey_alloc seq:"); for (int i = 0; i < 16; i++) printf(" %ld", pa(0, 0)); printf("\n");
	printf("free2=%ld free1(xonly)=%ld free16=%ld free-1=%ld alloc=%ld\n", pf(2), pf(1), pf(16), pf(-1), pa(0, 0));
	printf("alloc flags=1: %ld, init=4: %ld\n", pa(1, 0), pa(0, 4));
	printf("pkey_mprotect xonly key: %ld\n", pm(r, 4096, PROT_READ, 1));
	pf(5);
	printf("pkey_mprotect freed key 5: %ld\n", pm(r, 4096, PROT_READ, 5));
	printf("pkru now=%#x\n", rdpkru());
	long k = pa(0, 1); printf("alloc(DISABLE_ACCESS)=%ld pkru=%#x\n", k, rdpkru());
	char *d = mmap(0, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0); d[0] = 1;
	printf("pkey_mprotect(rw,%ld)=%ld\n", k, pm(d, 4096, PROT_READ|PROT_WRITE, k)); pkeyline(d); rd("AD key read present", d);
	pf(k); printf("after free: "); pkeyline(d); rd("freed key read", d);
	/* mprotect leaves exec-only: back to key 0 */
	mprotect(x, 4096, PROT_READ); pkeyline(x); pkeyline(x + 4096); rd("x after mprotect R", x); rd("x+4096 still X", x + 4096);
	mprotect(d, 4096, PROT_EXEC); printf("d mprotect X: "); pkeyline(d); rd("d X read", d);
	printf("pkey_mprotect(x, X, 0)=%ld ", pm(x, 4096, PROT_EXEC, 0)); pkeyline(x); rd("x X key0 read", x);
	printf("pf0=%ld a=%ld\n", pf(0), pa(0, 0));
	printf("pkru end=%#x\n", rdpkru());
	pid_t c = fork();
	if (!c) { printf("child: pkru=%#x alloc=%ld ", rdpkru(), pa(0, 0)); rd("child xonly", x + 4096); fflush(stdout); execl("/proc/self/exe", argv[0], "e", (char*)0); _exit(1); }
	waitpid(c, 0, 0);
	return 0;
}
