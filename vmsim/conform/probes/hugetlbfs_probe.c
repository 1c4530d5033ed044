/* hugetlbfs files and memfd_create on the running kernel: errno, pool counters,
 * data, faults. Needs root (mounts hugetlbfs on a private directory, sets
 * nr_hugepages to 8 and restores it). Output: one "label value" line per check. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <linux/falloc.h>
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 4
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x10
#define MFD_NOEXEC_SEAL 0x8
#endif
#define H (2UL << 20)
static char dir[64], path[96];
static sigjmp_buf jb;
static void onbus(int s) { (void)s; siglongjmp(jb, 1); }
static long minflt(void) { struct rusage ru; getrusage(RUSAGE_SELF, &ru); return ru.ru_minflt; }
static void pool(const char *tag) {
	FILE *f = fopen("/proc/meminfo", "r"); char l[128]; long tot = 0, fr = 0, rs = 0;
	while (fgets(l, sizeof l, f)) {
		sscanf(l, "HugePages_Total: %ld", &tot); sscanf(l, "HugePages_Free: %ld", &fr);
		sscanf(l, "HugePages_Rsvd: %ld", &rs);
	}
	fclose(f);
	printf("%s pool total=%ld free=%ld rsvd=%ld\n", tag, tot, fr, rs);
}
#define R(tag, x) do { errno = 0; long _r = (long)(x); printf("%s ret=%ld errno=%d\n", tag, _r < 0 ? -1L : _r, _r < 0 ? errno : 0); } while (0)
static void st(const char *tag, int fd) {
	struct stat s; fstat(fd, &s);
	printf("%s size=%ld blocks=%ld nlink=%ld mode=%o\n", tag, (long)s.st_size, (long)s.st_blocks, (long)s.st_nlink, s.st_mode);
}
static int rd(char *a) {   /* first byte, or -1 on SIGBUS */
	if (sigsetjmp(jb, 1)) return -1;
	return *(volatile char *)a;
}
static int wr(char *a, char v) {
	if (sigsetjmp(jb, 1)) return -1;
	*(volatile char *)a = v; return 0;
}
static void setnr(const char *v) { int f = open("/proc/sys/vm/nr_hugepages", O_WRONLY); write(f, v, strlen(v)); close(f); }
int main(int argc, char **argv) {
	if (argc > 2) {   /* after execve: is the descriptor still open? */
		struct stat s; int r = fstat(atoi(argv[2]), &s);
		printf("exec %s fstat ret=%d errno=%d\n", argv[1], r, r ? errno : 0);
		return 0;
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	signal(SIGBUS, onbus);
	char old[32] = {0}; int of = open("/proc/sys/vm/nr_hugepages", O_RDONLY); read(of, old, sizeof old - 1); close(of);
	setnr("8");
	snprintf(dir, sizeof dir, "/tmp/vmsim-hp-%d", getpid());
	mkdir(dir, 0755);
	if (mount("none", dir, "hugetlbfs", 0, NULL)) { perror("mount"); return 1; }
	snprintf(path, sizeof path, "%s/f", dir);
	pool("start");
	int fd = open(path, O_RDWR | O_CREAT, 0644);
	st("open", fd);
	R("ftruncate_4k", ftruncate(fd, 4096));
	R("ftruncate_4m", ftruncate(fd, 4 * H / 2));
	st("truncated", fd);
	R("pwrite", pwrite(fd, "x", 1, 0));
	R("write_empty", write(fd, "", 0));
	int rfd = open(path, O_RDONLY);
	R("pwrite_rdonly", pwrite(rfd, "x", 1, 0));
	R("mmap_shared_rdonly_fd", (long)mmap(NULL, H, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0));
	close(rfd);
	R("mmap_misaligned_off", (long)mmap(NULL, H, PROT_READ, MAP_SHARED, fd, 4096));
	R("mmap_too_big", (long)mmap(NULL, 20 * H, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
	pool("after_enomem");
	char *a = mmap(NULL, 2 * H, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	printf("mmap_ok %d\n", a != MAP_FAILED);
	pool("mapped");
	long f0 = minflt();
	a[0] = 'h'; a[H] = 'w'; a[H + 4096] = 'v';
	printf("write_faults %ld\n", minflt() - f0);
	pool("written");
	st("written", fd);
	char buf[8] = {0};
	R("pread0", pread(fd, buf, 1, 0)); printf("pread0 data=%d\n", buf[0]);
	R("pread_h", pread(fd, buf, 2, H + 4095)); printf("pread_h data=%d,%d\n", buf[0], buf[1]);
	R("pread_eof", pread(fd, buf, 8, 2 * H - 4));
	R("pread_past", pread(fd, buf, 8, 2 * H));
	R("fsync", fsync(fd));
	R("fadvise_dontneed", posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) ? -1 : 0);
	R("fadvise_bad", posix_fadvise(fd, 0, 0, 77) == EINVAL ? -1 : 0);
	R("lseek_end", lseek(fd, 0, SEEK_END));
	R("punch_nokeep", fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, H));
	R("falloc_collapse", fallocate(fd, 0x08, 0, H));
	/* partial punch: [H + 1, H + 4097) zeroes bytes inside page 1, frees nothing */
	R("punch_partial", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, H + 4095, 4098));
	printf("partial data=%d,%d,%d\n", a[H], a[H + 4096], a[H + 8192]);
	pool("partial");
	R("punch_page0", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, H));
	pool("punched");
	f0 = minflt();
	int v = rd(a);		/* before minflt(): argument order is unspecified */
	printf("after_punch data=%d faults=%ld\n", v, minflt() - f0);
	pool("refault");
	R("madv_remove", madvise(a + H, H, MADV_REMOVE));
	pool("removed");
	printf("after_remove data=%d\n", rd(a + H));
	pool("reread");
	R("falloc_grow", fallocate(fd, 0, 4 * H, H));
	st("grown", fd);
	pool("grown");
	R("falloc_keep", fallocate(fd, FALLOC_FL_KEEP_SIZE, 8 * H, H));
	st("kept", fd);
	pool("kept");
	R("falloc_exhaust", fallocate(fd, 0, 10 * H, 8 * H));
	st("exhaust", fd);
	pool("exhaust");
	R("ftruncate_back", ftruncate(fd, 2 * H));
	pool("truncated_back");
	char *p = mmap(NULL, 2 * H, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	pool("private_mapped");
	printf("private_read data=%d,%d\n", rd(p), rd(p + H));
	R("madv_remove_private", madvise(p, H, MADV_REMOVE));
	wr(p, 'p');
	pool("private_cow");
	printf("cow data shared=%d private=%d\n", rd(a), rd(p));
	R("ftruncate_shrink", ftruncate(fd, H));
	printf("after_shrink shared=%d,%d private=%d,%d\n", rd(a), rd(a + H), rd(p), rd(p + H));
	pool("shrunk");
	R("unlink", unlink(path));
	printf("unlinked data=%d\n", rd(a));
	pool("unlinked");
	munmap(p, 2 * H);
	pool("private_unmapped");
	munmap(a, 2 * H);
	pool("shared_unmapped");
	close(fd);
	pool("closed");
	/* memfd_create */
	R("memfd_badflag", memfd_create("m", 0x100));
	R("memfd_hugesize_nohugetlb", memfd_create("m", 21 << 26));
	R("memfd_exec_noexec", memfd_create("m", MFD_EXEC | MFD_NOEXEC_SEAL));
	char longname[300]; memset(longname, 'n', sizeof longname);
	longname[250] = 0; R("memfd_name250", memfd_create(longname, 0));
	longname[249] = 0; int l = memfd_create(longname, 0); printf("memfd_name249 ok=%d\n", l >= 0); close(l);
	R("memfd_huge_1mb", memfd_create("m", MFD_HUGETLB | (20 << 26)));
	int g = memfd_create("g", MFD_HUGETLB | (30 << 26)); printf("memfd_1gb ok=%d\n", g >= 0); close(g);
	int m = memfd_create("hm", MFD_HUGETLB | MFD_CLOEXEC);
	st("memfd_huge", m);
	R("memfd_huge_ftruncate", ftruncate(m, 2 * H));
	R("memfd_huge_pwrite", pwrite(m, "x", 1, 0));
	char *b = mmap(NULL, 2 * H, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
	pool("memfd_mapped");
	b[0] = 1;
	pool("memfd_written");
	st("memfd_written", m);
	R("memfd_remove", madvise(b, H, MADV_REMOVE));
	pool("memfd_removed");
	int s = memfd_create("plain", 0);
	st("memfd_plain", s);
	R("memfd_plain_write", write(s, "abc", 3));
	R("memfd_plain_pread", pread(s, buf, 3, 0));
	int s2 = memfd_create("plain2", MFD_CLOEXEC);
	char fds[2][16]; snprintf(fds[0], 16, "%d", s); snprintf(fds[1], 16, "%d", s2);
	pid_t pid = fork();
	if (!pid) { execl("/proc/self/exe", argv[0], "nocloexec", fds[0], NULL); _exit(1); }
	waitpid(pid, NULL, 0);
	pid = fork();
	if (!pid) { execl("/proc/self/exe", argv[0], "cloexec", fds[1], NULL); _exit(1); }
	waitpid(pid, NULL, 0);
	close(m);
	pool("memfd_closed");
	munmap(b, 2 * H);
	pool("memfd_unmapped");
	umount(dir); rmdir(dir);
	setnr(old);
	return 0;
}
