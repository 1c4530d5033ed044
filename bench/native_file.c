/* The real-kernel side of bench_file.py: read faults on a cached file mapping
 * (fault-around), on a cold one (major faults), and MAP_SHARED write faults, on two
 * files of SIZE bytes in DIR (the disk filesystem: /tmp). Usage:
 *   native_file SIZE DIR ROUNDS
 * File A is written with 2 MiB pwrites (ext4 caches it in 2 MiB folios), file B with
 * 64 KiB pwrites (16-page folios); both are fsynced first. Every mapping gets
 * MADV_NOHUGEPAGE: the 2 MiB folios would otherwise be mapped by one PMD per fault
 * (do_set_pmd) and the PTE path would not be measured. "cold" drops A's clean
 * folios with POSIX_FADV_DONTNEED (this file only, not drop_caches).
 * Prints one line per round: "<kind> <minflt> <majflt> <ns> <pages>", kinds:
 *   cached_pmd  read-touch of A without MADV_NOHUGEPAGE (one PMD per 2 MiB folio:
 *               filemap_map_pmd -> do_set_pmd)
 *   cached      read-touch of A (filemap_map_pages maps a whole 2 MiB folio per fault)
 *   cached_64k  read-touch of B (fault-around windows of 16 pages)
 *   cold        read-touch of A after DONTNEED (major faults, readahead)
 *   shwrite     write-touch of a fresh MAP_SHARED mapping of A (do_shared_fault)
 *   shwp        write-touch of B after a read-touch (wp_page_shared, one per page)
 * The file is fsynced after each write round (not timed). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static size_t len;
static int fd, fd_a, fd_b;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static void touch(volatile char *p, int write)
{
	for (size_t i = 0; i < len; i += 4096) {
		if (write) p[i] = 1;
		else (void)p[i];
	}
}

static int nohuge = 1;

static void round_(const char *kind, int prot, int flags, int pre_read, int write)
{
	char *p = mmap(0, len, prot, flags, fd, 0);
	if (p == MAP_FAILED) { perror("mmap"); exit(1); }
	if (nohuge)
		madvise(p, len, MADV_NOHUGEPAGE);
	if (pre_read) touch(p, 0);
	struct rusage r0, r1;
	getrusage(RUSAGE_SELF, &r0);
	double a = now();
	touch(p, write);
	double b = now();
	getrusage(RUSAGE_SELF, &r1);
	printf("%s %ld %ld %.0f %zu\n", kind, r1.ru_minflt - r0.ru_minflt,
	       r1.ru_majflt - r0.ru_majflt, b - a, len / 4096);
	munmap(p, len);
	if (write) fsync(fd);
}

int main(int argc, char **argv)
{
	len = argc > 1 ? strtoull(argv[1], 0, 0) : 1UL << 30;
	const char *dir = argc > 2 ? argv[2] : "/tmp";
	int rounds = argc > 3 ? atoi(argv[3]) : 4;
	size_t chunks[2] = { 2UL << 20, 64UL << 10 };
	int *fdp[2] = { &fd_a, &fd_b };
	char *buf = malloc(2UL << 20);
	memset(buf, 0x5a, 2UL << 20);
	for (int k = 0; k < 2; k++) {
		char path[256];
		snprintf(path, sizeof(path), "%s/vmsim-bench-file-%d-%d", dir, (int)getpid(), k);
		int f = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
		if (f < 0) { perror("open"); return 1; }
		unlink(path);		/* gone with the process, whatever happens */
		for (size_t off = 0; off < len; off += chunks[k])
			if (pwrite(f, buf, len - off < chunks[k] ? len - off : chunks[k], (off_t)off) < 0) {
				perror("pwrite");
				return 1;
			}
		fsync(f);
		*fdp[k] = f;
	}
	fd = fd_a;
	nohuge = 0;
	for (int r = 0; r < rounds; r++)
		round_("cached_pmd", PROT_READ, MAP_PRIVATE, 0, 0);
	nohuge = 1;
	for (int r = 0; r < rounds; r++)
		round_("cached", PROT_READ, MAP_PRIVATE, 0, 0);
	for (int r = 0; r < rounds; r++) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		round_("cold", PROT_READ, MAP_PRIVATE, 0, 0);
	}
	for (int r = 0; r < rounds; r++)
		round_("shwrite", PROT_READ | PROT_WRITE, MAP_SHARED, 0, 1);
	fd = fd_b;
	for (int r = 0; r < rounds; r++)
		round_("cached_64k", PROT_READ, MAP_PRIVATE, 0, 0);
	for (int r = 0; r < rounds; r++)
		round_("shwp", PROT_READ | PROT_WRITE, MAP_SHARED, 1, 1);
	close(fd_a);
	close(fd_b);
	return 0;
}
