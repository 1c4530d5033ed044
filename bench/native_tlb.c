/* The hit path on this machine's CPU: `n` loads at a stride over a small prefaulted
 * region (TLB hits), timed with CLOCK_MONOTONIC. Prints nanoseconds per access. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 10000000;
	long size = argc > 2 ? atol(argv[2]) : 64 * 4096;
	long stride = argc > 3 ? atol(argv[3]) : 64;
	volatile unsigned char *p = mmap(0, size, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	for (long i = 0; i < size; i += 4096)
		p[i] = 1;
	struct timespec a, b;
	unsigned sum = 0;
	long off = 0;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++) {
		sum += p[off];
		off += stride;
		if (off >= size)
			off = 0;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
	printf("%.4f %u\n", ns / n, sum & 1);
	return 0;
}
