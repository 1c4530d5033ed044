/* The real-kernel side of bench_fault.py: first-touch write faults over 1 GiB of
 * private anonymous memory (4 KiB pages: MADV_NOHUGEPAGE), timed per fault.
 * Each round maps, touches and unmaps; the first round warms the host (this VM
 * returns freed memory to its host, and refaulting it there is not the guest
 * kernel's cost), later rounds reuse guest-free memory. Prints one line per round:
 * "<faults> <ns per fault>". */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

int main(int argc, char **argv)
{
	size_t len = (argc > 1 ? strtoull(argv[1], 0, 0) : 1UL << 30);
	int rounds = argc > 2 ? atoi(argv[2]) : 4;
	for (int r = 0; r < rounds; r++) {
		char *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) { perror("mmap"); return 1; }
		madvise(p, len, MADV_NOHUGEPAGE);
		struct rusage r0, r1;
		struct timespec a, b;
		getrusage(RUSAGE_SELF, &r0);
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
		for (size_t i = 0; i < len; i += 4096)
			p[i] = 1;
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
		getrusage(RUSAGE_SELF, &r1);
		double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
		long f = r1.ru_minflt - r0.ru_minflt;
		printf("%ld %.1f\n", f, ns / f);
		munmap(p, len);
	}
	return 0;
}
