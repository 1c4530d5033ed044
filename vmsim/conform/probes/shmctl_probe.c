/* shmctl's info, stat, set and lock commands and /proc/sysvipc/shm on the running
 * kernel, in a fresh IPC namespace (unshare, root). Pids print as "self" (vmsim's
 * differ), times as whether they are set. Sets nr_hugepages to 2 for one SHM_HUGETLB
 * segment and restores it. Output: shmctl-6.18.txt (tests/test_shm.py). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sched.h>
#include <unistd.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#ifndef SHM_HUGETLB
#define SHM_HUGETLB 04000
#endif
#ifndef SHM_STAT_ANY
#define SHM_STAT_ANY 15
#endif

static void ipc_info(const char *tag) {
	struct shminfo si; memset(&si, 0, sizeof si);
	int r = shmctl(0, IPC_INFO, (struct shmid_ds *)&si);
	printf("%s ipc_info ret=%d shmmax=%lu shmmin=%lu shmmni=%lu shmseg=%lu shmall=%lu\n", tag, r,
	       si.shmmax, si.shmmin, si.shmmni, si.shmseg, si.shmall);
}
static void shm_info(const char *tag) {
	struct shm_info i; memset(&i, 0, sizeof i);
	int r = shmctl(0, SHM_INFO, (struct shmid_ds *)&i);
	printf("%s shm_info ret=%d used_ids=%d shm_tot=%lu shm_rss=%lu shm_swp=%lu\n", tag, r,
	       i.used_ids, i.shm_tot, i.shm_rss, i.shm_swp);
}
static void stat(const char *tag, int id, int cmd) {
	struct shmid_ds ds; int r = shmctl(id, cmd, &ds);
	if (r < 0) { printf("%s stat ret=-1 errno=%d\n", tag, errno); return; }
	printf("%s stat ret=%d key=%d uid=%u gid=%u cuid=%u cgid=%u mode=%o segsz=%lu nattch=%lu "
	       "cpid=%s lpid=%s atime=%d dtime=%d ctime=%d\n", tag, r, ds.shm_perm.__key,
	       ds.shm_perm.uid, ds.shm_perm.gid, ds.shm_perm.cuid, ds.shm_perm.cgid, ds.shm_perm.mode,
	       (unsigned long)ds.shm_segsz, (unsigned long)ds.shm_nattch,
	       ds.shm_cpid == getpid() ? "self" : "other", ds.shm_lpid == getpid() ? "self" :
	       ds.shm_lpid ? "other" : "0", ds.shm_atime != 0, ds.shm_dtime != 0, ds.shm_ctime != 0);
}
static void proc(const char *tag) {
	FILE *f = fopen("/proc/sysvipc/shm", "r"); char l[512]; int n = 0;
	while (fgets(l, sizeof l, f)) {
		if (n++ == 0) { printf("%s proc header=%s", tag, l); continue; }
		int key, id, cpid, lpid; unsigned mode, uid, gid, cuid, cgid;
		unsigned long size, nattch, rss, swp; long long at, dt, ct;
		sscanf(l, "%d %d %o %lu %d %d %lu %u %u %u %u %lld %lld %lld %lu %lu", &key, &id, &mode,
		       &size, &cpid, &lpid, &nattch, &uid, &gid, &cuid, &cgid, &at, &dt, &ct, &rss, &swp);
		printf("%s proc key=%d id=%d perms=%o size=%lu cpid=%s lpid=%s nattch=%lu uid=%u gid=%u "
		       "cuid=%u cgid=%u atime=%d dtime=%d ctime=%d rss=%lu swap=%lu len=%zu\n", tag, key, id,
		       mode, size, cpid == getpid() ? "self" : "other", lpid == getpid() ? "self" :
		       lpid ? "other" : "0", nattch, uid, gid, cuid, cgid, at != 0, dt != 0, ct != 0, rss,
		       swp, strlen(l));
	}
	fclose(f);
}
static void R(const char *tag, int r) { printf("%s ret=%d errno=%d\n", tag, r, r < 0 ? errno : 0); }

int main(void)
{
	if (unshare(CLONE_NEWIPC)) { perror("unshare"); return 1; }
	ipc_info("empty"); shm_info("empty"); proc("empty");
	int a = shmget(IPC_PRIVATE, 3 * 4096 + 100, IPC_CREAT | 0600);
	int b = shmget(0x1234, 8192, IPC_CREAT | 0640);
	printf("ids a=%d b=%d\n", a, b);
	ipc_info("two"); shm_info("two");
	char *p = shmat(a, 0, 0);
	p[0] = 1; p[8192] = 2;
	shm_info("written"); proc("written"); stat("a", a, IPC_STAT);
	stat("stat_idx0", 0, SHM_STAT); stat("stat_any_idx1", 1, SHM_STAT_ANY);
	stat("stat_idx5", 5, SHM_STAT);
	struct shmid_ds ds; shmctl(b, IPC_STAT, &ds);
	ds.shm_perm.uid = 1; ds.shm_perm.gid = 2; ds.shm_perm.mode = 03604;
	R("set_b", shmctl(b, IPC_SET, &ds)); stat("b_set", b, IPC_STAT);
	R("set_bad", shmctl(77, IPC_SET, &ds));
	R("lock_a", shmctl(a, SHM_LOCK, 0)); stat("a_locked", a, IPC_STAT);
	R("lock_a_again", shmctl(a, SHM_LOCK, 0)); proc("locked");
	R("unlock_a", shmctl(a, SHM_UNLOCK, 0)); stat("a_unlocked", a, IPC_STAT);
	R("unlock_a_again", shmctl(a, SHM_UNLOCK, 0));
	R("lock_bad", shmctl(77, SHM_LOCK, 0));
	R("cmd_99", shmctl(a, 99, &ds));
	R("neg_id", shmctl(-1, IPC_STAT, &ds));
	R("rmid_a", shmctl(a, IPC_RMID, 0)); proc("a_removed"); shm_info("a_removed");
	R("dt_a", shmdt(p)); proc("a_detached"); ipc_info("a_detached");
	/* one SHM_HUGETLB segment: SHM_LOCK leaves it alone; its rss */
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r"); long old = 0;
	if (fscanf(f, "%ld", &old) != 1) old = 0;
	fclose(f);
	f = fopen("/proc/sys/vm/nr_hugepages", "w"); fprintf(f, "%ld\n", old + 2); fclose(f);
	int h = shmget(IPC_PRIVATE, 2 << 20, IPC_CREAT | SHM_HUGETLB | 0600);
	printf("huge id=%d\n", h);
	char *q = shmat(h, 0, 0);
	q[0] = 1;
	shm_info("huge"); proc("huge");
	R("lock_huge", shmctl(h, SHM_LOCK, 0)); stat("huge_locked", h, IPC_STAT);
	shmdt(q); shmctl(h, IPC_RMID, 0); shmctl(b, IPC_RMID, 0);
	f = fopen("/proc/sys/vm/nr_hugepages", "w"); fprintf(f, "%ld\n", old); fclose(f);
	proc("end"); shm_info("end");
	return 0;
}
