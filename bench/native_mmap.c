/* The real-kernel side of bench_mmap.py: mmap with a placement search among many VMAs.
 *
 * For each VMA count N given on the command line, maps 2N pages, then unmaps every
 * other page, leaving N one-page VMAs separated by one-page holes (no merge possible,
 * no hole fits two pages). Then, ROUNDS times, it times mmap(NULL, 2 pages) (the
 * top-down search: vm_unmapped_area -> unmapped_area_topdown has to find a gap of two
 * pages below the N VMAs) and munmaps the result untimed. Times are CPU times of the
 * thread (CLOCK_THREAD_CPUTIME_ID). Prints one line per N:
 * "<N> <median ns per mmap over batches of 100>". */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int batches = 21;
	for (int i = 1; i < argc; i++) {
		long n = atol(argv[i]);
		size_t len = (size_t)n * 2 * 4096;
		char *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) { perror("mmap"); return 1; }
		for (long j = 0; j < n; j++)
			munmap(p + (2 * j + 1) * 4096, 4096);
		double per[64];
		for (int b = 0; b < batches; b++) {
			double t = 0;
			for (int k = 0; k < 100; k++) {
				double a = now_ns();
				char *q = mmap(0, 2 * 4096, PROT_READ | PROT_WRITE,
					       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
				t += now_ns() - a;
				if (q == MAP_FAILED) { perror("mmap"); return 1; }
				munmap(q, 2 * 4096);
			}
			per[b] = t / 100;
		}
		qsort(per, batches, sizeof(double), cmp);
		printf("%ld %.1f\n", n, per[batches / 2]);
		munmap(p, len);
	}
	return 0;
}
