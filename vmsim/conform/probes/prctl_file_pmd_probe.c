#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#define SZ (16UL << 20)
static long field(void *addr, const char *name) {
	FILE *f = fopen("/proc/self/smaps", "r"); char l[256]; int in = 0; long v = -1;
	while (fgets(l, sizeof l, f)) {
		unsigned long lo, hi;
		if (sscanf(l, "%lx-%lx ", &lo, &hi) == 2 && strchr(l, '-') < strchr(l, ' ')) in = (unsigned long)addr == lo;
		else if (in && !strncmp(l, name, strlen(name))) sscanf(l + strlen(name) + 1, "%ld", &v);
	}
	fclose(f); return v;
}
static long minflt(void) { struct rusage ru; getrusage(RUSAGE_SELF, &ru); return ru.ru_minflt; }
static void run(int fd, const char *tag) {
	char *m = mmap(NULL, SZ, PROT_READ, MAP_SHARED, fd, 0);
	long f0 = minflt(); volatile char s = 0;
	for (unsigned long i = 0; i < SZ; i += 4096) s += m[i];
	printf("%s faults=%ld FilePmdMapped=%ld aligned=%d\n", tag, minflt() - f0, field(m, "FilePmdMapped"), ((unsigned long)m & ((2UL << 20) - 1)) == 0);
	munmap(m, SZ);
}
int main(void) {
	char path[] = "/tmp/vmsim-file-prctl-XXXXXX";
	int fd = mkstemp(path);
	char *buf = malloc(2 << 20); memset(buf, 1, 2 << 20);
	for (unsigned long o = 0; o < SZ; o += 2 << 20) pwrite(fd, buf, 2 << 20, o);
	run(fd, "enabled");
	prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
	run(fd, "disabled");
	prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0);
	run(fd, "reenabled");
	unlink(path); close(fd);
	return 0;
}
