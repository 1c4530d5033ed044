/* The real kernel's hugetlb fault: first-touch writes of 2 MiB MAP_HUGETLB pages.
 * Usage: native_hugetlb NPAGES ROUNDS. Needs root to size the pool; sets
 * /proc/sys/vm/nr_hugepages to NPAGES for the run and restores it. Prints one line per
 * round: "round NS_PER_FAULT", or "nopool N" when the pool could not be filled. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/mman.h>

static long rd(void) { long v = 0; FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r"); if (f) { if (fscanf(f, "%ld", &v) != 1) v = 0; fclose(f); } return v; }
static void wr(long v) { FILE *f = fopen("/proc/sys/vm/nr_hugepages", "w"); if (f) { fprintf(f, "%ld", v); fclose(f); } }

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 128, rounds = argc > 2 ? atol(argv[2]) : 5;
	long old = rd();
	wr(n > old ? n : old);
	if (rd() < n) { printf("nopool %ld\n", rd()); wr(old); return 0; }
	for (long r = 0; r < rounds; r++) {
		size_t len = (size_t)n << 21;
		char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
		if (p == MAP_FAILED) { printf("mmap failed\n"); break; }
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		for (size_t off = 0; off < len; off += 1 << 21)
			p[off] = 1;
		clock_gettime(CLOCK_MONOTONIC, &b);
		printf("%ld %.0f\n", r, ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
		munmap(p, len);
	}
	wr(old);
	return 0;
}
