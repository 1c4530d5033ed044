/* The real-kernel side of bench_thp.py: THP faults over SIZE bytes of MADV_HUGEPAGE
 * private anonymous memory (one write per 2 MiB), then fork of that memory (the
 * child exits at once; timed from fork() to the parent's waitpid()).
 * Prints per round: "<faults> <ns per fault> <thp_fault_alloc delta> <ns per fork>
 * <CPU ns per fork>": the wall time (CLOCK_MONOTONIC) from fork() to the parent's
 * waitpid() return, and the CPU time of that work: the parent's own CPU time over
 * the same span (CLOCK_PROCESS_CPUTIME_ID: fork's copy of the page tables, waitpid)
 * plus the child's whole CPU time (getrusage(RUSAGE_CHILDREN) utime + stime before
 * and after: its return from fork, exit_mmap's zap, the rest of do_exit). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long vmstat(const char *name)
{
	FILE *f = fopen("/proc/vmstat", "r");
	char k[128];
	long v, r = -1;
	if (!f)
		return -1;
	while (fscanf(f, "%127s %ld", k, &v) == 2)
		if (!strcmp(k, name))
			r = v;
	fclose(f);
	return r;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static double cpu_self(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static double cpu_children(void)
{
	struct rusage u;
	getrusage(RUSAGE_CHILDREN, &u);
	return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e9 +
	       (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e3;
}

int main(int argc, char **argv)
{
	size_t len = argc > 1 ? strtoull(argv[1], 0, 0) : 1UL << 30;
	int rounds = argc > 2 ? atoi(argv[2]) : 4;
	for (int r = 0; r < rounds; r++) {
		char *raw = mmap(0, len + (2 << 20), PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (raw == MAP_FAILED) { perror("mmap"); return 1; }
		char *p = (char *)(((unsigned long)raw + (2 << 20) - 1) & ~((2UL << 20) - 1));
		madvise(p, len, MADV_HUGEPAGE);
		struct rusage r0, r1;
		long t0 = vmstat("thp_fault_alloc");
		getrusage(RUSAGE_SELF, &r0);
		double a = now();
		for (size_t i = 0; i < len; i += 2 << 20)
			p[i] = 1;
		double b = now();
		getrusage(RUSAGE_SELF, &r1);
		long f = r1.ru_minflt - r0.ru_minflt;
		long thp = vmstat("thp_fault_alloc") - t0;
		double ch0 = cpu_children();
		double s0 = cpu_self();
		double c = now();
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		waitpid(pid, 0, 0);
		double d = now();
		double s1 = cpu_self();
		double ch1 = cpu_children();
		printf("%ld %.1f %ld %.1f %.1f\n", f, (b - a) / f, thp, d - c,
		       (s1 - s0) + (ch1 - ch0));
		munmap(raw, len + (2 << 20));
	}
	return 0;
}
