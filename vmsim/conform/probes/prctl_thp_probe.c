#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/resource.h>
#ifndef PR_THP_DISABLE_EXCEPT_ADVISED
#define PR_THP_DISABLE_EXCEPT_ADVISED (1 << 1)
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
static long vmstat(const char *name) {
	FILE *f = fopen("/proc/vmstat", "r"); char k[128]; long v, r = -1;
	while (fscanf(f, "%127s %ld", k, &v) == 2) if (!strcmp(k, name)) r = v;
	fclose(f); return r;
}
static long minflt(void) { struct rusage ru; getrusage(RUSAGE_SELF, &ru); return ru.ru_minflt; }
static void status_thp(const char *tag) {
	FILE *f = fopen("/proc/self/status", "r"); char l[256];
	while (fgets(l, sizeof l, f)) if (!strncmp(l, "THP_enabled", 11)) printf("%s %s", tag, l);
	fclose(f);
}
/* 4 MiB region, aligned 2 MiB window touched; advice 0 none, 1 HUGEPAGE, 2 COLLAPSE after */
static void run(const char *tag, int advice) {
	char *m = mmap(NULL, 4 << 20, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
	char *a = (char *)(((unsigned long)m + (2 << 20) - 1) & ~((2UL << 20) - 1));
	if (advice == 1) madvise(a, 2 << 20, MADV_HUGEPAGE);
	long t0 = vmstat("thp_fault_alloc"), c0 = vmstat("thp_collapse_alloc"), f0 = minflt();
	for (long i = 0; i < (2 << 20); i += 4096) a[i] = 1;
	long f1 = minflt();
	int cr = 0, ce = 0;
	if (advice == 2) { cr = madvise(a, 2 << 20, MADV_COLLAPSE); ce = cr ? errno : 0; }
	printf("%s advice=%d thp_fault_alloc=%ld minflt=%ld collapse_ret=%d errno=%d thp_collapse_alloc=%ld\n",
	       tag, advice, vmstat("thp_fault_alloc") - t0, f1 - f0, cr, ce, vmstat("thp_collapse_alloc") - c0);
	munmap(m, 4 << 20);
}
#define P(x) do { long r = (x); printf("%-50s = %ld errno=%d\n", #x, r, r < 0 ? errno : 0); errno = 0; } while (0)
int main(int argc, char **argv) {
	if (argc > 1) { printf("after execve GET=%d\n", prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)); status_thp("exec"); return 0; }
	setvbuf(stdout, NULL, _IONBF, 0);
	P(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0));
	status_thp("init");
	for (int adv = 0; adv < 3; adv++) run("enabled", adv);
	P(prctl(PR_SET_THP_DISABLE, 0, PR_THP_DISABLE_EXCEPT_ADVISED, 0, 0));
	P(prctl(PR_SET_THP_DISABLE, 1, 1, 0, 0));
	P(prctl(PR_SET_THP_DISABLE, 1, 3, 0, 0));
	P(prctl(PR_SET_THP_DISABLE, 1, 0, 1, 0));
	P(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 1));
	P(prctl(PR_GET_THP_DISABLE, 1, 0, 0, 0));
	P(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 1));
	P(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0));
	P(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0));
	P(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0));
	status_thp("completely");
	for (int adv = 0; adv < 3; adv++) run("completely", adv);
	pid_t pid = fork();
	if (!pid) { printf("child GET=%d\n", prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)); _exit(0); }
	waitpid(pid, NULL, 0);
	pid = fork();
	if (!pid) { execl("/proc/self/exe", argv[0], "x", NULL); _exit(1); }
	waitpid(pid, NULL, 0);
	P(prctl(PR_SET_THP_DISABLE, 5, PR_THP_DISABLE_EXCEPT_ADVISED, 0, 0));
	P(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0));
	status_thp("except_advised");
	for (int adv = 0; adv < 3; adv++) run("except_advised", adv);
	P(prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0));
	P(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0));
	P(prctl(PR_SET_THP_DISABLE, 1UL << 32, 0, 0, 0));
	P(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0));
	P(prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0));
	P(prctl(12345, 0, 0, 0, 0));
	return 0;
}
