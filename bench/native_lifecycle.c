/* The real-kernel side of bench_lifecycle.py: fork, copy-on-write and munmap of
 * private anonymous memory (4 KiB pages: MADV_NOHUGEPAGE), 1 GiB by default.
 *
 * Each round maps the region and fills every page with non-zero bytes, then
 *   fork    the time of fork() as the parent sees it;
 *   cow     the child writes one byte per page (do_wp_page -> wp_page_copy, a 4 KiB
 *           copy each), ns per fault, measured in the child and sent over a pipe;
 *   reuse   after the child exited, the parent writes one byte per page (the pages
 *           are its own again: wp_can_reuse_anon_folio), ns per fault;
 *   dontneed  MADV_DONTNEED over the populated region (zap_page_range_single), ns
 *           per page; the region is then filled again;
 *   munmap  the time of munmap() of the populated region, ns per page.
 * The first round warms the host (this VM returns freed memory to its host, and
 * refaulting it there is not the guest kernel's cost). Prints one line per round:
 * "<pages> <fork ns> <cow ns/fault> <cow faults> <reuse ns/fault> <reuse faults>
 *  <munmap ns/page> <dontneed ns/page>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static long minflt(void)
{
	struct rusage r;
	getrusage(RUSAGE_SELF, &r);
	return r.ru_minflt;
}

/* One byte per page; returns ns per fault and stores the fault count. */
static double write_pages(volatile char *p, size_t len, long *faults)
{
	long f0 = minflt();
	double a = now_ns();
	for (size_t i = 0; i < len; i += 4096)
		p[i] = 2;
	double b = now_ns();
	*faults = minflt() - f0;
	return (b - a) / (*faults ? *faults : 1);
}

int main(int argc, char **argv)
{
	size_t len = (argc > 1 ? strtoull(argv[1], 0, 0) : 1UL << 30);
	int rounds = argc > 2 ? atoi(argv[2]) : 5;
	for (int r = 0; r < rounds; r++) {
		char *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) { perror("mmap"); return 1; }
		madvise(p, len, MADV_NOHUGEPAGE);
		memset(p, 0x5a, len);
		int fd[2];
		if (pipe(fd)) { perror("pipe"); return 1; }
		double a = now_ns();
		pid_t pid = fork();
		if (pid == 0) {
			long f;
			double ns = write_pages(p, len, &f);
			char buf[64];
			int n = snprintf(buf, sizeof(buf), "%.1f %ld", ns, f);
			if (write(fd[1], buf, n) != n)
				_exit(1);
			_exit(0);
		}
		double fork_ns = now_ns() - a;
		if (pid < 0) { perror("fork"); return 1; }
		char buf[64] = {0};
		close(fd[1]);
		if (read(fd[0], buf, sizeof(buf) - 1) <= 0) { fprintf(stderr, "child failed\n"); return 1; }
		close(fd[0]);
		int status;
		waitpid(pid, &status, 0);
		long rf;
		double reuse = write_pages(p, len, &rf);
		a = now_ns();
		madvise(p, len, MADV_DONTNEED);
		double dontneed = now_ns() - a;
		memset(p, 0x5a, len);
		a = now_ns();
		munmap(p, len);
		double unmap = now_ns() - a;
		printf("%zu %.0f %s %.1f %ld %.1f %.1f\n", len >> 12, fork_ns, buf, reuse, rf,
		       unmap / (len >> 12), dontneed / (len >> 12));
		fflush(stdout);
	}
	return 0;
}
