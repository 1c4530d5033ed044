/* SysV shm on the running kernel, in a fresh IPC namespace (unshare, root): ids,
 * errno, hugetlb pool counts, maps lines, nattch. Sets nr_hugepages to 4, restores it. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/mman.h>
#include <sys/wait.h>
#ifndef SHM_HUGETLB
#define SHM_HUGETLB 04000
#endif
#ifndef SHM_NORESERVE
#define SHM_NORESERVE 010000
#endif
#define H (2UL << 20)
static void pool(const char *tag) {
	FILE *f = fopen("/proc/meminfo", "r"); char l[128]; long fr = 0, rs = 0;
	while (fgets(l, sizeof l, f)) { sscanf(l, "HugePages_Free: %ld", &fr); sscanf(l, "HugePages_Rsvd: %ld", &rs); }
	fclose(f);
	printf("%s pool free=%ld rsvd=%ld\n", tag, fr, rs);
}
static void maps(const char *tag) {
	FILE *f = fopen("/proc/self/maps", "r"); char l[256];
	while (fgets(l, sizeof l, f)) if (strstr(l, "SYSV")) {
		char perm[8], dev[16], name[64]; unsigned long lo, hi, off, ino;
		sscanf(l, "%lx-%lx %7s %lx %15s %lu %63s", &lo, &hi, perm, &off, dev, &ino, name);
		printf("%s maps len=%lu %s %s ino=%lu %s\n", tag, hi - lo, perm, dev, ino, name);
	}
	fclose(f);
}
static void nattch(const char *tag, int id) {
	struct shmid_ds ds; int r = shmctl(id, IPC_STAT, &ds);
	if (r) printf("%s stat errno=%d\n", tag, errno);
	else printf("%s stat segsz=%lu nattch=%lu mode=%o\n", tag, (unsigned long)ds.shm_segsz, (unsigned long)ds.shm_nattch, ds.shm_perm.mode & 01777);
}
#define R(tag, x) do { errno = 0; long _r = (long)(x); printf("%s ret=%ld errno=%d\n", tag, _r == -1 ? -1L : _r, _r == -1 ? errno : 0); } while (0)
static void setnr(const char *v) { int f = open("/proc/sys/vm/nr_hugepages", O_WRONLY); write(f, v, strlen(v)); close(f); }
int main(void) {
	setvbuf(stdout, NULL, _IONBF, 0);
	if (unshare(CLONE_NEWIPC)) { perror("unshare"); return 1; }
	char old[32] = {0}; int of = open("/proc/sys/vm/nr_hugepages", O_RDONLY); read(of, old, sizeof old - 1); close(of);
	setnr("4");
	pool("start");
	R("get_size0", shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600));
	R("get_badhuge", shmget(IPC_PRIVATE, H, IPC_CREAT | SHM_HUGETLB | (20 << 26) | 0600));
	R("get_toobig", shmget(IPC_PRIVATE, 10 * H, IPC_CREAT | SHM_HUGETLB | 0600));
	pool("toobig");
	R("get_nokey", shmget(0x1234, 4096, 0600));
	int h = shmget(IPC_PRIVATE, 3 << 20, IPC_CREAT | SHM_HUGETLB | 0600);
	printf("huge id=%d\n", h);
	pool("huge_created");
	int nr = shmget(IPC_PRIVATE, 10 * H, IPC_CREAT | SHM_HUGETLB | SHM_NORESERVE | 0600);
	printf("noreserve id=%d\n", nr);
	pool("noreserve_created");
	char *a = shmat(h, NULL, 0);
	printf("attach ok=%d aligned=%d\n", a != (void *)-1, ((unsigned long)a & (H - 1)) == 0);
	maps("attached");
	pool("attached");
	nattch("attached", h);
	a[0] = 7; a[H] = 8;
	pool("written");
	pid_t pid = fork();
	if (!pid) { printf("child data=%d,%d\n", a[0], a[H]); nattch("child", h); a[1] = 9; _exit(0); }
	waitpid(pid, NULL, 0);
	printf("after_child data=%d\n", a[1]);
	nattch("after_child", h);
	R("at_misaligned", (long)shmat(h, a + 4096 + 1, 0));
	R("at_overlap", (long)shmat(h, a, 0));
	R("dt_misaligned", shmdt(a + 1));
	R("dt_notshm", shmdt((void *)0x10000));
	R("rmid", shmctl(h, IPC_RMID, NULL));
	nattch("rmid", h);
	pool("rmid");
	R("dt", shmdt(a));
	pool("detached");
	nattch("detached", h);
	R("rmid_again", shmctl(h, IPC_RMID, NULL));
	R("rmid_noreserve", shmctl(nr, IPC_RMID, NULL));
	pool("noreserve_removed");
	int s = shmget(0x4d2, 8192, IPC_CREAT | 0600);
	printf("shmem id=%d\n", s);
	R("get_same_key", shmget(0x4d2, 4096, 0600));
	R("get_excl", shmget(0x4d2, 4096, IPC_CREAT | IPC_EXCL | 0600));
	R("get_bigger", shmget(0x4d2, 3 * 4096, 0600));
	char *b = shmat(s, NULL, SHM_RDONLY);
	maps("shmem_rdonly");
	char *c = shmat(s, NULL, 0);
	c[0] = 5;
	printf("shmem data=%d\n", b[0]);
	char *d = shmat(s, (char *)((unsigned long)c + 4096 + 123), SHM_RND | SHM_REMAP);
	printf("rnd at=c%+ld\n", (long)(d - c));
	nattch("shmem", s);
	shmdt(b); shmdt(c); shmdt(d);
	nattch("shmem_detached", s);
	shmctl(s, IPC_RMID, NULL);
	setnr(old);
	return 0;
}
