/* Huge tmpfs on Linux 6.18: what the conformance executor cannot express (mount(2)
 * with huge=, remount, write(2) folio sizes, mmap placement of a tmpfs file, the
 * shmem_enabled write rules). Root; builds with `cc -o /tmp/p shmem_thp_probe.c`.
 * Output: shmem_thp-6.18.txt, compared line by line with vmsim by
 * tests/test_shmem_thp.py. Restores every knob it writes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define T "/sys/kernel/mm/transparent_hugepage/"
#define MB (1UL << 20)
static const int kbs[] = {8, 16, 32, 64, 128, 256, 512, 1024, 2048};
static long st0[9];
static char buf[4 * MB];

static long rd(const char *path)
{
	char b[64] = {0};
	int fd = open(path, O_RDONLY);
	if (fd < 0 || read(fd, b, sizeof(b) - 1) < 0)
		return -1;
	close(fd);
	return atol(b);
}

static void snap(void)
{
	char p[256];
	for (int i = 0; i < 9; i++) {
		snprintf(p, sizeof p, T "hugepages-%dkB/stats/shmem_alloc", kbs[i]);
		st0[i] = rd(p);
	}
}

static void allocs(const char *what)
{
	char p[256];
	printf("%s: shmem_alloc", what);
	int any = 0;
	for (int i = 0; i < 9; i++) {
		snprintf(p, sizeof p, T "hugepages-%dkB/stats/shmem_alloc", kbs[i]);
		long d = rd(p) - st0[i];
		if (d) {
			printf(" %dkB=%ld", kbs[i], d);
			any = 1;
		}
	}
	printf("%s\n", any ? "" : " none");
	snap();
}

static long minflt(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

/* The smaps field of the VMA at addr, kB. */
static long smaps_field(void *addr, const char *field)
{
	char line[512];
	unsigned long lo, hi, a = (unsigned long)addr;
	int in = 0;
	long v = -1;
	FILE *f = fopen("/proc/self/smaps", "r");
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = lo <= a && a < hi;
		else if (in && !strncmp(line, field, strlen(field)))
			v = atol(line + strlen(field) + 1);
	}
	fclose(f);
	return v;
}

static int wr(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	int r = write(fd, s, strlen(s));
	int e = errno;
	close(fd);
	return r < 0 ? -e : 0;
}

static const char *en(int r)
{
	return r == 0 ? "ok" : r == -EINVAL ? "EINVAL" : r == -EBUSY ? "EBUSY" : strerror(-r);
}

/* huge=never places no mapping at a 2 MiB boundary, so where it lands (and with it
 * the fault-around windows) depends on the process: such a mapping is put at a 2 MiB
 * boundary with MAP_FIXED ("placed"); the others show shmem_get_unmapped_area's. */
static void map_and_touch(const char *tag, int fd, int advise, int write, int natural)
{
	char w[160];
	char *a;
	if (natural) {
		a = mmap(NULL, 4 * MB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	} else {
		char *r = mmap(NULL, 6 * MB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		char *al = (char *)(((unsigned long)r + 2 * MB - 1) & ~(2 * MB - 1));
		a = mmap(al, 4 * MB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
		if (al > r)
			munmap(r, al - r);
		munmap(al + 4 * MB, r + 6 * MB - (al + 4 * MB));
	}
	if (advise)
		madvise(a, 4 * MB, MADV_HUGEPAGE);
	long f0 = minflt();
	for (unsigned long o = 0; o < 4 * MB; o += 4096) {
		if (write)
			a[o] = 1;
		else
			(void)*(volatile char *)(a + o);
	}
	long f1 = minflt();
	snprintf(w, sizeof w, "%s: mmap %s faults=%ld ShmemPmdMapped=%ld FilePmdMapped=%ld", tag,
		 !natural ? "placed" : ((unsigned long)a & (2 * MB - 1)) ? "unaligned" : "2M-aligned",
		 f1 - f0,
		 smaps_field(a, "ShmemPmdMapped"), smaps_field(a, "FilePmdMapped"));
	printf("%s\n", w);
	munmap(a, 4 * MB);
}

int main(void)
{
	static const char *huge[] = {"never", "always", "within_size", "advise"};
	char dir[] = "/tmp/shmem_thp_probe_XXXXXX", opt[64], path[256], tag[64];
	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof path, "%s/f", dir);
	memset(buf, 7, sizeof buf);
	snap();
	for (int h = 0; h < 4; h++) {
		snprintf(opt, sizeof opt, "huge=%s,size=64m", huge[h]);
		if (mount("tmpfs", dir, "tmpfs", 0, opt))
			return 2;
		int fd = open(path, O_RDWR | O_CREAT, 0644);
		snprintf(tag, sizeof tag, "huge=%s pwrite 3M at 0", huge[h]);
		pwrite(fd, buf, 3 * MB, 0);
		allocs(tag);
		snprintf(tag, sizeof tag, "huge=%s pwrite 4K at 8M", huge[h]);
		pwrite(fd, buf, 4096, 8 * MB);
		allocs(tag);
		snprintf(tag, sizeof tag, "huge=%s read-touch", huge[h]);
		map_and_touch(tag, fd, 0, 0, h != 0);
		allocs(tag);
		close(fd);
		unlink(path);
		fd = open(path, O_RDWR | O_CREAT, 0644);
		ftruncate(fd, 4 * MB);
		snprintf(tag, sizeof tag, "huge=%s madvise write-touch", huge[h]);
		map_and_touch(tag, fd, 1, 1, h != 0);
		allocs(tag);
		close(fd);
		unlink(path);
		if (umount(dir))
			return 3;
	}
	/* Mount option errors, remount, umount while open. */
	printf("mount huge=deny: %s\n", en(mount("tmpfs", dir, "tmpfs", 0, "huge=deny") ? -errno : 0));
	printf("mount huge=force: %s\n", en(mount("tmpfs", dir, "tmpfs", 0, "huge=force") ? -errno : 0));
	printf("mount huge=Always: %s\n", en(mount("tmpfs", dir, "tmpfs", 0, "huge=Always") ? -errno : 0));
	printf("mount huge: %s\n", en(mount("tmpfs", dir, "tmpfs", 0, "huge") ? -errno : 0));
	printf("mount bogus=1: %s\n", en(mount("tmpfs", dir, "tmpfs", 0, "bogus=1") ? -errno : 0));
	printf("mount huge=never: %s\n", en(mount("tmpfs", dir, "tmpfs", 0, "huge=never") ? -errno : 0));
	int fd = open(path, O_RDWR | O_CREAT, 0644);
	pwrite(fd, buf, 2 * MB, 0);
	allocs("never pwrite 2M");
	printf("remount huge=always: %s\n",
	       en(mount("none", dir, NULL, MS_REMOUNT, "huge=always") ? -errno : 0));
	pwrite(fd, buf, 2 * MB, 2 * MB);
	allocs("remounted pwrite 2M at 2M");
	printf("remount size=1g (the default size, half of RAM, was set): %s\n",
	       en(mount("none", dir, NULL, MS_REMOUNT, "size=1g") ? -errno : 0));
	printf("umount while open: %s\n", en(umount(dir) ? -errno : 0));
	close(fd);
	printf("umount: %s\n", en(umount(dir) ? -errno : 0));
	rmdir(dir);
	/* The shmem_enabled write rules (shmem_enabled_store, thpsize_shmem_enabled_store). */
	printf("shmem_enabled=Always: %s\n", en(wr(T "shmem_enabled", "Always")));
	printf("shmem_enabled='advise ': %s\n", en(wr(T "shmem_enabled", "advise ")));
	printf("shmem_enabled=advise\\n: %s\n", en(wr(T "shmem_enabled", "advise\n")));
	printf("64kB shmem_enabled=inherit: %s\n", en(wr(T "hugepages-64kB/shmem_enabled", "inherit")));
	printf("shmem_enabled=force with 64kB inherit: %s\n", en(wr(T "shmem_enabled", "force")));
	printf("64kB shmem_enabled=never: %s\n", en(wr(T "hugepages-64kB/shmem_enabled", "never")));
	printf("shmem_enabled=force: %s\n", en(wr(T "shmem_enabled", "force")));
	printf("64kB shmem_enabled=inherit under force: %s\n",
	       en(wr(T "hugepages-64kB/shmem_enabled", "inherit")));
	printf("2048kB shmem_enabled=inherit under force: %s\n",
	       en(wr(T "hugepages-2048kB/shmem_enabled", "inherit")));
	printf("64kB shmem_enabled=within_size under force: %s\n",
	       en(wr(T "hugepages-64kB/shmem_enabled", "within_size")));
	wr(T "hugepages-64kB/shmem_enabled", "never");
	printf("shmem_enabled=never: %s\n", en(wr(T "shmem_enabled", "never")));
	return 0;
}
