/*
 * executor.c - the real-kernel side of `vmsim conform`.
 *
 * Reads a line-oriented step program (written by vmsim/conform/linux.py from a
 * TOML scenario), runs the steps as real syscalls and memory accesses, and prints
 * JSON lines (the "raw" records that vmsim/conform/compare.py derives observations
 * from; vmsim/conform/vmsim_side.py produces the same records from the model).
 *
 *   cc -O1 -static executor.c -o executor      (or -Wl,-z,now when -static fails)
 *   ./executor PROGRAM
 *
 * It must not disturb what it measures:
 *  - the whole program is parsed before anything is measured;
 *  - pinned to CPU 0 (a page in another CPU's LRU batch changes COW reuse and
 *    MADV_FREE accounting);
 *  - every page of its own mappings (text, data, bss, heap) and 256 KiB of stack
 *    are touched before measuring, so measured code runs on present pages;
 *  - nothing is allocated in a measured section: buffers are static; step results
 *    go to a static array and are printed at observation points, between the
 *    getrusage() that closes one interval and the one that opens the next;
 *  - SIGSEGV/SIGBUS are caught with sigsetjmp/siglongjmp and recorded.
 * The "empty" scenario proves it: its empty intervals show 0 faults.
 *
 * Program lines (numbers decimal, may be negative; slot -1 = absolute address):
 *   knob PATH VALUE          set a sysfs/sysctl knob (root), restored at exit
 *   mmap S LEN PROT FLAGS HS HOFF ALIGN
 *   munmap S OFF LEN | mprotect S OFF LEN PROT | madvise S OFF LEN ADV
 *   mremap S OFF OLDLEN NEWLEN FLAGS DS DOFF RS
 *   mlock S OFF LEN FLAGS | munlock S OFF LEN
 *   brk OFF RS               brk(base + OFF); RS >= 0 names [base, base+OFF)
 *   touch S OFF LEN STRIDE WRITE VALUE CONT DESC
 *   fill S OFF LEN VALUE PERPAGE | check S OFF LEN VALUE PERPAGE
 *   rlimit RES CUR MAX       (-1 = RLIM_INFINITY)
 *   name S WHICH ANCHOR LEN  WHICH 0 = [stack], 1 = [heap]; ANCHOR 0 = the VMA,
 *                            1 = its top LEN bytes, 2 = the LEN bytes below it
 *   point ID | smaps S | pagemap S | vmstat NAME | endpoint
 *   fork C                   fork; the child is process C
 *   exit STATUS | wait C | execve
 *   procs N                  the number of processes (first line; default 1)
 * Files (F is a file slot; its path is DIR/vmsim-conform-PID-F with DIR the tmp
 * (FS 0, the disk filesystem) or shm (FS 1, tmpfs) directory given on the command
 * line, /tmp and /dev/shm by default; every created file is unlinked at the end):
 *   open F FS FLAGS MODE | close F | unlink F | fsync F DATAONLY | ftruncate F LEN
 *   pwrite F OFF LEN VALUE PERPAGE      one pwrite(2) per 2 MiB from a static buffer
 *   pread F OFF LEN VALUE PERPAGE       one pread(2) per 2 MiB; counts differing bytes
 *   fadvise F OFF LEN ADVICE | fallocate F MODE OFF LEN
 *   dropcaches VALUE                    write VALUE to /proc/sys/vm/drop_caches
 *   msync S OFF LEN FLAGS | mincore S   (mincore: an observation at a point)
 *   mmap ... FS FOFF                    FS >= 0: map file slot FS at offset FOFF
 * A line may start with @P: process P runs it (default 0, the initial process).
 *
 * Processes. Every process runs the same program and executes only its own ops;
 * a baton (one pipe per process, at fixed descriptors) passes control, so exactly
 * one process runs at a time, in program order. After fork the parent touches its
 * own pages again (they are copy-on-write now) and leaves those faults out of its
 * interval; the child does the same when it first gets the baton and starts its
 * counts there (its faults at a point are its own since then). Output is flushed
 * before the baton moves. exit hands the baton on with its pid, and the receiver
 * waits on a pidfd until the exit (exit_mm included) is complete. execve re-executes
 * this program with --exec: a minimal program that only waits for the baton (to
 * exit). The initial process is a child subreaper, so orphans are reaped at the end.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#define PG 4096UL
#define MAXOPS 4096
#define MAXSLOTS 64
#define MAXPM 4096
#define MAXKNOBS 16
#define MAXPROCS 16
#define BATFD(q, end) (200 + 2 * (q) + (end))

enum { O_KNOB, O_MMAP, O_MUNMAP, O_MPROTECT, O_MADVISE, O_MREMAP, O_MLOCK, O_MUNLOCK,
       O_BRK, O_TOUCH, O_FILL, O_CHECK, O_RLIMIT, O_NAME, O_POINT, O_SMAPS, O_PAGEMAP,
       O_VMSTAT, O_ENDPOINT, O_FORK, O_EXIT, O_WAIT, O_EXECVE, O_PROCS,
       OF_OPEN, OF_CLOSE, OF_UNLINK, OF_FSYNC, OF_FTRUNCATE, OF_PWRITE, OF_PREAD, OF_FADVISE,
       OF_FALLOCATE, OF_DROPCACHES, OF_MSYNC, OF_MINCORE, O_PRCTL, OF_MEMFD,
       O_SHMGET, O_SHMAT, O_SHMDT, O_SHMRM };
static const char *opnames[] = { "knob", "mmap", "munmap", "mprotect", "madvise", "mremap",
	"mlock", "munlock", "brk", "touch", "fill", "check", "rlimit", "name", "point", "smaps",
	"pagemap", "vmstat", "endpoint", "fork", "exit", "wait", "execve", "procs",
	"open", "close", "unlink", "fsync", "ftruncate", "pwrite", "pread", "fadvise",
	"fallocate", "dropcaches", "msync", "mincore", "prctl", "memfd",
	"shmget", "shmat", "shmdt", "shmrm", NULL };

struct op { int kind, step, proc; long a[9]; char s1[128], s2[128]; };
struct res { int used; long ret; int err, nsig, signo, code; uintptr_t saddr, base; long done; };

static struct op prog[MAXOPS];
static int nops;
static struct res res[MAXOPS];
static uintptr_t maddr[MAXSLOTS];
static size_t mlen[MAXSLOTS];
static uintptr_t brk_base;

#define MAXFILES 16
#define IOCHUNK (2UL << 20)
static int fds[MAXFILES];		/* per process: the descriptor of file slot F */
static char fpath[MAXFILES][192];	/* the path of every file slot opened */
static char iobuf[IOCHUNK];
static unsigned char mcvec[MAXPM];
static const char *fsdir[2] = { "/tmp", "/dev/shm" };

static char inbuf[1 << 20];
static char filebuf[4 << 20];
static char outbuf[1 << 20];
static size_t outlen;
static uint64_t pm[MAXPM];
static int pm_fd = -1;
static uint64_t zero_pfn;
static int priv;

static struct { char path[128], old[64]; } knobs[MAXKNOBS];
static int nknobs;

static sigjmp_buf jb;
static volatile int jb_armed;
static volatile int nsig, lsigno, lcode, sig_mark;
static volatile uintptr_t laddr;
static volatile long cur_i;
static struct rusage ru0, ru1;

static int me, nprocs = 1;		/* this process's index; how many the program has */
static pid_t pids[MAXPROCS];		/* children's pids, as the forker knows them */
static pid_t main_pid;			/* the initial process */
static const char *prog_path;
extern char **environ;

/* ------------------------------------------------------------------ output */
static void flush_out(void)
{
	size_t off = 0;
	while (off < outlen) {
		ssize_t w = write(1, outbuf + off, outlen - off);
		if (w <= 0) break;
		off += (size_t)w;
	}
	outlen = 0;
}

static void ob(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ob(const char *fmt, ...)
{
	va_list ap;
	if (outlen > sizeof(outbuf) - 65536) flush_out();
	va_start(ap, fmt);
	int n = vsnprintf(outbuf + outlen, sizeof(outbuf) - outlen, fmt, ap);
	va_end(ap);
	if (n > 0) outlen += (size_t)n;
	if (outlen >= sizeof(outbuf)) outlen = sizeof(outbuf) - 1;
}

static void die(const char *msg)
{
	flush_out();
	ob("{\"t\":\"error\",\"msg\":\"%s\"}\n", msg);
	flush_out();
	_exit(2);
}

static size_t read_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	size_t len = 0;
	if (fd < 0) { buf[0] = 0; return 0; }
	for (;;) {
		ssize_t r = read(fd, buf + len, cap - 1 - len);
		if (r <= 0) break;
		len += (size_t)r;
		if (len >= cap - 1) break;
	}
	close(fd);
	buf[len] = 0;
	return len;
}

/* ------------------------------------------------------------------ signals */
static void handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (nsig == sig_mark) {		/* the first signal of the step */
		lsigno = sig;
		lcode = si->si_code;
		laddr = (uintptr_t)si->si_addr;
	}
	nsig = nsig + 1;
	if (jb_armed) {
		jb_armed = 0;
		siglongjmp(jb, 1);
	}
	_exit(99);
}

/* ------------------------------------------------------------------ self prefault */
struct range { uintptr_t lo, hi; char perm[5]; char name[64]; };
static struct range ranges[512];
static int nranges;

static void parse_maps(void)
{
	read_file("/proc/self/maps", filebuf, sizeof(filebuf));
	nranges = 0;
	char *s = filebuf;
	while (*s && nranges < 512) {
		char *nl = strchr(s, '\n');
		if (nl) *nl = 0;
		struct range *r = &ranges[nranges];
		unsigned long lo, hi;
		char perm[8] = {0};
		int pos = 0;
		if (sscanf(s, "%lx-%lx %4s %*s %*s %*s %n", &lo, &hi, perm, &pos) >= 3) {
			r->lo = lo; r->hi = hi;
			memcpy(r->perm, perm, 4); r->perm[4] = 0;
			r->name[0] = 0;
			if (pos > 0 && (size_t)pos < strlen(s)) {
				strncpy(r->name, s + pos, sizeof(r->name) - 1);
				r->name[sizeof(r->name) - 1] = 0;
			}
			nranges++;
		}
		if (!nl) break;
		s = nl + 1;
	}
}

static struct range own[64];
static int nown = -1;

static __attribute__((noinline)) void prefault_self(void)
{
	if (nown < 0) {
		parse_maps();
		nown = nranges < 64 ? nranges : 64;
		memcpy(own, ranges, sizeof(own[0]) * (size_t)nown);
	}
	for (int i = 0; i < nown; i++) {
		struct range *r = &own[i];
		if (!strcmp(r->name, "[stack]") || !strncmp(r->name, "[vvar", 5) ||
		    !strcmp(r->name, "[vsyscall]") || r->perm[0] != 'r')
			continue;
		for (uintptr_t a = r->lo; a < r->hi; a += PG) {
			volatile char *c = (volatile char *)a;
			if (r->perm[1] == 'w') { char v = *c; *c = v; }
			else (void)*c;
		}
	}
}

static __attribute__((noinline)) void prefault_stack(void)
{
	volatile char buf[256 * 1024];
	for (size_t i = 0; i < sizeof(buf); i += PG) buf[i] = 0;
	buf[sizeof(buf) - 1] = 0;
}

/* After fork every private page of ours is copy-on-write: write each one again
 * (stack included: the frames above this one too) so that measured code does not
 * fault on the executor's own memory. */
static __attribute__((noinline)) void prefault_all(void)
{
	prefault_stack();
	prefault_self();
	for (int i = 0; i < nown; i++) {
		if (strcmp(own[i].name, "[stack]")) continue;
		for (uintptr_t a = own[i].lo; a < own[i].hi; a += PG) {
			volatile char *c = (volatile char *)a;
			char v = *c;
			*c = v;
		}
	}
}

static struct range *find_named(const char *name)
{
	parse_maps();
	for (int i = 0; i < nranges; i++)
		if (!strcmp(ranges[i].name, name)) return &ranges[i];
	return NULL;
}

/* ------------------------------------------------------------------ program */
static void parse_program(const char *path)
{
	if (!read_file(path, inbuf, sizeof(inbuf))) die("cannot read the program");
	char *s = inbuf;
	while (*s) {
		char *nl = strchr(s, '\n');
		if (nl) *nl = 0;
		char word[32] = {0};
		int pos = 0, proc = 0;
		if (s[0] == '@') {
			int pp = 0;
			if (sscanf(s, "@%d %n", &proc, &pp) < 1 || proc < 0 || proc >= MAXPROCS)
				die("bad @process prefix");
			s += pp;
		}
		if (sscanf(s, "%31s %n", word, &pos) >= 1 && word[0] != '#') {
			if (nops >= MAXOPS) die("program too long");
			struct op *o = &prog[nops];
			int k;
			for (k = 0; opnames[k]; k++) if (!strcmp(word, opnames[k])) break;
			if (!opnames[k]) die("unknown op");
			o->kind = k;
			o->step = nops;
			o->proc = proc;
			char *p = s + pos;
			if (k == O_KNOB) {
				if (sscanf(p, "%127s %127s", o->s1, o->s2) != 2) die("bad knob line");
			} else if (k == O_POINT || k == O_VMSTAT) {
				if (sscanf(p, "%127s", o->s1) != 1) die("bad point/vmstat line");
			} else {
				for (int j = 0; j < 9; j++) {
					char *e;
					long v = strtol(p, &e, 0);
					if (e == p) break;
					o->a[j] = v;
					p = e;
				}
			}
			if (k == O_PROCS) {
				nprocs = (int)o->a[0];
				if (nprocs < 1 || nprocs > MAXPROCS) die("bad procs line");
				memset(o, 0, sizeof(*o));
			} else {
				nops++;
			}
		}
		if (!nl) break;
		s = nl + 1;
	}
}

/* ------------------------------------------------------------------ knobs */
static void knob_current(const char *path, char *out, size_t cap)
{
	char b[512];
	read_file(path, b, sizeof(b));
	char *lb = strchr(b, '['), *rb = lb ? strchr(lb, ']') : NULL;
	if (lb && rb) { *rb = 0; snprintf(out, cap, "%s", lb + 1); return; }
	char *nl = strchr(b, '\n');
	if (nl) *nl = 0;
	snprintf(out, cap, "%s", b);
}

static int knob_write(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0) return errno;
	ssize_t w = write(fd, val, strlen(val));
	int e = w < 0 ? errno : 0;
	close(fd);
	return e;
}

static void restore_knobs(void)
{
	for (int i = nknobs - 1; i >= 0; i--) knob_write(knobs[i].path, knobs[i].old);
	nknobs = 0;
}

/* ------------------------------------------------------------------ accesses */
static __attribute__((noinline)) void do_touch(struct op *o, struct res *r)
{
	long n = o->a[3] > 0 ? (o->a[2] + o->a[3] - 1) / o->a[3] : 0;
	uintptr_t base = (o->a[0] < 0 ? 0 : maddr[o->a[0]]) + (uintptr_t)o->a[1];
	int write = (int)o->a[4], cont = (int)o->a[6], desc = (int)o->a[7];
	char v = (char)o->a[5];
	cur_i = 0;
	r->done = 0;
	for (;;) {
		if (sigsetjmp(jb, 1) == 0) {
			jb_armed = 1;
			for (; cur_i < n; cur_i++) {
				long k = desc ? n - 1 - cur_i : cur_i;
				volatile char *c = (volatile char *)(base + (uintptr_t)(k * o->a[3]));
				if (write) *c = v;
				else (void)*c;
				r->done++;
			}
			jb_armed = 0;
			break;
		}
		if (!cont) break;
		cur_i++;
	}
}

static __attribute__((noinline)) void do_fill(struct op *o, struct res *r, int check)
{
	uintptr_t base = (o->a[0] < 0 ? 0 : maddr[o->a[0]]) + (uintptr_t)o->a[1];
	long len = o->a[2];
	char v = (char)o->a[3];
	int perpage = (int)o->a[4];
	cur_i = 0;
	r->done = 0;
	r->ret = 0;
	if (sigsetjmp(jb, 1) == 0) {
		jb_armed = 1;
		for (; cur_i < len; cur_i++) {
			volatile char *c = (volatile char *)(base + (uintptr_t)cur_i);
			char want = (char)(v + (perpage ? cur_i / (long)PG : 0));
			if (check) { if (*c != want) r->ret++; }
			else *c = want;
			r->done++;
		}
		jb_armed = 0;
	}
}

/* ------------------------------------------------------------------ files */
static void fill_pattern(long from, long n, long off0, char v, int perpage)
{
	for (long j = 0; j < n; j++)
		iobuf[j] = (char)(v + (perpage ? (from + j - off0) / (long)PG : 0));
}

/* pwrite/pread of [off, off+len) in chunks of IOCHUNK; pread counts differing bytes. */
static long do_fileio(struct op *o, struct res *r, int rd)
{
	int fd = o->a[0] >= 0 && o->a[0] < MAXFILES ? fds[o->a[0]] : -1;
	long off = o->a[1], len = o->a[2], pos = off, end = off + len;
	char v = (char)o->a[3];
	int perpage = (int)o->a[4];
	r->done = 0;
	r->ret = 0;
	while (pos < end || (len == 0 && pos == off)) {
		long n = end - pos < (long)IOCHUNK ? end - pos : (long)IOCHUNK;
		ssize_t k;
		if (rd) {
			k = pread(fd, iobuf, (size_t)n, pos);
		} else {
			fill_pattern(pos, n, off, v, perpage);
			k = pwrite(fd, iobuf, (size_t)n, pos);
		}
		if (k < 0) return -1;
		if (rd) {
			for (long j = 0; j < k; j++)
				if (iobuf[j] != (char)(v + (perpage ? (pos + j - off) / (long)PG : 0)))
					r->ret++;
		}
		r->done += k;
		pos += k;
		if (k == 0 || len == 0) break;	/* EOF */
	}
	return rd ? r->ret : r->done;
}

static void file_path(int f, int fs)
{
	snprintf(fpath[f], sizeof(fpath[f]), "%s/vmsim-conform-%d-%d", fsdir[fs ? 1 : 0],
		 (int)main_pid, f);
}

/* The files this run created go away with it (the initial process, at the end). */
#define MAXSEGS 16
static int shmids[MAXSEGS] = { -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1 };

static void remove_files(void)
{
	for (int g = 0; g < MAXSEGS; g++)	/* SysV segments made by the run */
		if (shmids[g] >= 0) shmctl(shmids[g], IPC_RMID, NULL);
	for (int f = 0; f < MAXFILES; f++) {
		if (fds[f] >= 0) close(fds[f]);
		fds[f] = -1;
		if (fpath[f][0]) unlink(fpath[f]);
	}
}

/* ------------------------------------------------------------------ observations */
static const char *smaps_fields[] = {
	"Size", "Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty",
	"Referenced", "Anonymous", "LazyFree", "AnonHugePages", "ShmemPmdMapped", "FilePmdMapped",
	"Shared_Hugetlb", "Private_Hugetlb", "Swap", "SwapPss", "Locked", NULL
};

static void obs_smaps(int slot, const char *id)
{
	uintptr_t lo = maddr[slot], hi = maddr[slot] + mlen[slot];
	read_file("/proc/self/smaps", filebuf, sizeof(filebuf));
	ob("{\"t\":\"smaps\",\"id\":\"%s\",\"slot\":%d,\"addr\":%lu,\"vmas\":[", id, slot,
	   (unsigned long)lo);
	char *s = filebuf;
	int in = 0, first = 1;
	while (*s) {
		char *nl = strchr(s, '\n');
		if (nl) *nl = 0;
		unsigned long a, b;
		char perm[8];
		if (((s[0] >= '0' && s[0] <= '9') || (s[0] >= 'a' && s[0] <= 'f')) &&
		    sscanf(s, "%lx-%lx %7s", &a, &b, perm) == 3) {
			if (in) ob("}]");
			in = a < hi && b > lo;
			if (in) {
				ob("%s[%lu,%lu,\"%s\",{\"_\":0", first ? "" : ",", a, b, perm);
				first = 0;
			}
		} else if (in) {
			for (int i = 0; smaps_fields[i]; i++) {
				size_t l = strlen(smaps_fields[i]);
				if (!strncmp(s, smaps_fields[i], l) && s[l] == ':') {
					ob(",\"%s\":%ld", smaps_fields[i], strtol(s + l + 1, NULL, 10));
					break;
				}
			}
		}
		if (!nl) break;
		s = nl + 1;
	}
	if (in) ob("}]");
	ob("]}\n");
}

static void obs_pagemap(int slot, const char *id)
{
	size_t n = mlen[slot] / PG;
	if (n > MAXPM) n = MAXPM;
	ssize_t r = pread(pm_fd, pm, n * 8, (off_t)(maddr[slot] / PG) * 8);
	ob("{\"t\":\"pagemap\",\"id\":\"%s\",\"slot\":%d,\"addr\":%lu,\"e\":[", id, slot,
	   (unsigned long)maddr[slot]);
	for (size_t i = 0; r == (ssize_t)(n * 8) && i < n; i++)
		ob("%s%llu", i ? "," : "", (unsigned long long)pm[i]);
	ob("]}\n");
}

static void obs_vmstat(struct op *first, const char *id)
{
	/* Node counters (workingset_*) have per-CPU deltas below the vmstat threshold
	 * that /proc/vmstat does not include: fold them first (root; vmstat_refresh). */
	for (struct op *o = first; o < prog + nops && o->kind == O_VMSTAT; o++) {
		if (!strncmp(o->s1, "workingset_", 11)) {
			int fd = open("/proc/sys/vm/stat_refresh", O_WRONLY);
			if (fd >= 0) {
				if (write(fd, "1", 1) < 0) { /* unprivileged: the deltas lag */ }
				close(fd);
			}
			break;
		}
	}
	read_file("/proc/vmstat", filebuf, sizeof(filebuf));
	ob("{\"t\":\"vmstat\",\"id\":\"%s\",\"v\":{", id);
	int n = 0;
	for (struct op *o = first; o < prog + nops && o->kind == O_VMSTAT; o++) {
		size_t l = strlen(o->s1);
		for (char *s = filebuf; s && *s; ) {
			if (!strncmp(s, o->s1, l) && s[l] == ' ') {
				ob("%s\"%s\":%ld", n++ ? "," : "", o->s1, strtol(s + l + 1, NULL, 10));
				break;
			}
			s = strchr(s, '\n');
			if (s) s++;
		}
	}
	ob("}}\n");
}

static void obs_mincore(int slot, const char *id)
{
	size_t n = mlen[slot] / PG;
	if (n > MAXPM) n = MAXPM;
	int e = mincore((void *)maddr[slot], n * PG, mcvec) ? errno : 0;
	ob("{\"t\":\"mincore\",\"id\":\"%s\",\"slot\":%d,\"err\":%d,\"v\":\"", id, slot, e);
	for (size_t i = 0; !e && i < n; i++) ob("%c", mcvec[i] & 1 ? '1' : '0');
	ob("\"}\n");
}

/* The results of this process's steps not printed yet, in program order. */
static void print_mine(void)
{
	for (int i = 0; i < nops; i++) {
		struct res *r = &res[i];
		if (!r->used || prog[i].proc != me) continue;
		r->used = 0;
		ob("{\"t\":\"step\",\"i\":%d,\"ret\":%ld,\"err\":%d,\"nsig\":%d,\"signo\":%d,"
		   "\"code\":%d,\"saddr\":%lu,\"base\":%lu,\"done\":%ld}\n", prog[i].step, r->ret,
		   r->err, r->nsig, r->signo, r->code, (unsigned long)r->saddr,
		   (unsigned long)r->base, r->done);
	}
}

/* ------------------------------------------------------------------ steps */
static __attribute__((noinline)) void run_op(struct op *o, struct res *r)
{
	long *a = o->a;
	uintptr_t base = (a[0] >= 0 && a[0] < MAXSLOTS) ? maddr[a[0]] : 0;
	int ns0 = nsig;
	long ret = 0;
	sig_mark = ns0;
	errno = 0;
	r->used = 1;
	r->base = base;
	switch (o->kind) {
	case O_KNOB: {
		if (!priv) { ret = -1; errno = EPERM; break; }
		char cur[64];
		knob_current(o->s1, cur, sizeof(cur));
		if (!strcmp(cur, o->s2)) break;
		if (nknobs < MAXKNOBS) {
			snprintf(knobs[nknobs].path, sizeof(knobs[0].path), "%s", o->s1);
			snprintf(knobs[nknobs].old, sizeof(knobs[0].old), "%s", cur);
			nknobs++;
		}
		int e = knob_write(o->s1, o->s2);
		if (e) { ret = -1; errno = e; }
		break;
	}
	case O_MMAP: {
		size_t len = (size_t)a[1];
		int prot = (int)a[2], flags = (int)a[3];
		uintptr_t hint = a[4] >= 0 ? maddr[a[4]] + (uintptr_t)a[5] : 0;
		void *p;
		int mfd = a[7] >= 0 && a[7] < MAXFILES ? fds[a[7]] : -1;
		if (a[6] > 0) {
			/* alignment: reserve len+align, place the mapping aligned inside, trim */
			uintptr_t al = (uintptr_t)a[6];
			char *res_ = mmap(NULL, len + al, PROT_NONE,
					  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
			if (res_ == MAP_FAILED) { ret = -1; break; }
			uintptr_t at = ((uintptr_t)res_ + al - 1) & ~(al - 1);
			p = mmap((void *)at, len, prot, flags | MAP_FIXED, mfd, (off_t)a[8]);
			if (at > (uintptr_t)res_) munmap(res_, at - (uintptr_t)res_);
			if ((uintptr_t)res_ + len + al > at + len)
				munmap((void *)(at + len), (uintptr_t)res_ + len + al - (at + len));
		} else {
			p = mmap((void *)hint, len, prot, flags, mfd, (off_t)a[8]);
		}
		if (p == MAP_FAILED) { ret = -1; break; }
		ret = (long)p;
		maddr[a[0]] = (uintptr_t)p;
		mlen[a[0]] = len;
		break;
	}
	case O_MUNMAP: ret = munmap((void *)(base + a[1]), (size_t)a[2]); break;
	case O_MPROTECT: ret = mprotect((void *)(base + a[1]), (size_t)a[2], (int)a[3]); break;
	case O_MADVISE: ret = madvise((void *)(base + a[1]), (size_t)a[2], (int)a[3]); break;
	case O_MREMAP: {
		uintptr_t dst = a[5] >= 0 ? maddr[a[5]] + (uintptr_t)a[6] : 0;
		void *p = (void *)syscall(SYS_mremap, base + a[1], (size_t)a[2], (size_t)a[3],
					  (int)a[4], dst);
		if (p == MAP_FAILED) { ret = -1; break; }
		ret = (long)p;
		if (a[7] >= 0) { maddr[a[7]] = (uintptr_t)p; mlen[a[7]] = (size_t)a[3]; }
		break;
	}
	case O_MLOCK:
		ret = syscall(SYS_mlock2, base + a[1], (size_t)a[2], (int)a[3]);
		break;
	case O_MUNLOCK: ret = munlock((void *)(base + a[1]), (size_t)a[2]); break;
	case O_BRK: {
		r->base = brk_base;
		ret = syscall(SYS_brk, brk_base + a[0]);
		if (a[1] >= 0) { maddr[a[1]] = brk_base; mlen[a[1]] = a[0] > 0 ? (size_t)a[0] : 0; }
		break;
	}
	case O_WAIT: {
		int st = 0;
		pid_t w = waitpid(pids[a[0]], &st, 0);
		ret = w < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		break;
	}
	case OF_OPEN: {
		int f = (int)a[0];
		if (!fpath[f][0]) file_path(f, (int)a[1]);
		ret = open(fpath[f], (int)a[2] | O_CLOEXEC, (mode_t)a[3]);
		if (ret >= 0) fds[f] = (int)ret;
		break;
	}
	case OF_CLOSE: ret = close(fds[a[0]]); fds[a[0]] = -1; break;
	case OF_UNLINK: ret = unlink(fpath[a[0]]); break;
	case OF_FSYNC: ret = a[1] ? fdatasync(fds[a[0]]) : fsync(fds[a[0]]); break;
	case OF_FTRUNCATE: ret = ftruncate(fds[a[0]], (off_t)a[1]); break;
	case OF_PWRITE: ret = do_fileio(o, r, 0); break;
	case OF_PREAD: ret = do_fileio(o, r, 1); break;
	case OF_FADVISE: {
		int e = posix_fadvise(fds[a[0]], (off_t)a[1], (off_t)a[2], (int)a[3]);
		if (e) { ret = -1; errno = e; }
		break;
	}
	case OF_FALLOCATE: ret = fallocate(fds[a[0]], (int)a[1], (off_t)a[2], (off_t)a[3]); break;
	case OF_DROPCACHES: {
		char v[24];
		snprintf(v, sizeof(v), "%ld", a[0]);
		int e = priv ? knob_write("/proc/sys/vm/drop_caches", v) : EPERM;
		if (e) { ret = -1; errno = e; }
		break;
	}
	case OF_MSYNC: ret = msync((void *)(base + a[1]), (size_t)a[2], (int)a[3]); break;
	case O_PRCTL:
		r->base = 0;
		ret = prctl((int)a[0], (unsigned long)a[1], (unsigned long)a[2],
			    (unsigned long)a[3], (unsigned long)a[4]);
		break;
	case O_SHMGET:		/* segment slot a[0], size a[1], shmflg a[2]: IPC_PRIVATE */
		r->base = 0;
		ret = shmget(IPC_PRIVATE, (size_t)a[1], (int)a[2]);
		if (ret >= 0) shmids[a[0]] = (int)ret;
		break;
	case O_SHMAT: {		/* map slot a[0], segment slot a[1], shmflg a[2], length a[3] */
		void *p = shmat(shmids[a[1]], NULL, (int)a[2]);
		if (p == (void *)-1) { ret = -1; break; }
		ret = (long)p;
		maddr[a[0]] = (uintptr_t)p;
		mlen[a[0]] = (size_t)a[3];
		break;
	}
	case O_SHMDT: ret = shmdt((void *)base); break;
	case O_SHMRM:
		r->base = 0;
		ret = shmctl(shmids[a[0]], IPC_RMID, NULL);
		if (!ret) shmids[a[0]] = -1;
		break;
	case OF_MEMFD:		/* file slot a[0], memfd_create flags a[1]: no path */
		ret = syscall(SYS_memfd_create, "vmsim-conform", (unsigned int)a[1]);
		if (ret >= 0) fds[a[0]] = (int)ret;
		break;
	case O_TOUCH: do_touch(o, r); break;
	case O_FILL: do_fill(o, r, 0); ret = 0; break;
	case O_CHECK: do_fill(o, r, 1); ret = r->ret; break;
	case O_RLIMIT: {
		struct rlimit rl = { a[1] < 0 ? RLIM_INFINITY : (rlim_t)a[1],
				     a[2] < 0 ? RLIM_INFINITY : (rlim_t)a[2] };
		ret = setrlimit((int)a[0], &rl);
		break;
	}
	case O_NAME: {
		struct range *g = find_named(a[1] == 0 ? "[stack]" : "[heap]");
		if (!g) { ret = -1; errno = ENOENT; break; }
		if (a[2] == 0) { maddr[a[0]] = g->lo; mlen[a[0]] = g->hi - g->lo; }
		else if (a[2] == 1) { maddr[a[0]] = g->hi - (uintptr_t)a[3]; mlen[a[0]] = (size_t)a[3]; }
		else { maddr[a[0]] = g->lo - (uintptr_t)a[3]; mlen[a[0]] = (size_t)a[3]; }
		r->base = maddr[a[0]];
		break;
	}
	default: break;
	}
	r->err = ret == -1 ? errno : 0;
	if (o->kind == OF_PREAD && ret != -1) r->err = 0;
	if (o->kind == O_CHECK || o->kind == O_TOUCH || o->kind == O_FILL) r->err = 0;
	r->ret = ret;
	r->nsig = nsig - ns0;
	if (r->nsig) { r->signo = lsigno; r->code = lcode; r->saddr = laddr; }
}

/* ------------------------------------------------------------------ processes */
struct baton { int next, dead; };

static void pass_baton(int to, int next, int dead)
{
	struct baton b = { next, dead };
	flush_out();
	if (write(BATFD(to, 1), &b, sizeof(b)) != (ssize_t)sizeof(b)) die("baton write");
}

/* Block until another process hands us the baton; return the op to continue at.
 * A baton from an exiting process carries its pid: wait until it is gone. */
static int take_baton(void)
{
	struct baton b;
	for (;;) {
		/* a process left behind by a killed run (a timeout) must not wait forever */
		struct pollfd bf = { .fd = BATFD(me, 0), .events = POLLIN };
		int n = poll(&bf, 1, 1000);
		if (n == 0 && me != 0 && kill(main_pid, 0) < 0 && errno == ESRCH) _exit(3);
		if (n <= 0) continue;
		ssize_t r = read(BATFD(me, 0), &b, sizeof(b));
		if (r == (ssize_t)sizeof(b)) break;
		if (r < 0 && errno == EINTR) continue;
		die("baton read");
	}
	if (b.dead > 0) {
		int fd = (int)syscall(SYS_pidfd_open, b.dead, 0);
		if (fd >= 0) {
			struct pollfd pf = { .fd = fd, .events = POLLIN };
			while (poll(&pf, 1, -1) < 0 && errno == EINTR)
				;
			close(fd);
		}
	}
	return b.next;
}

static int do_fork(int i)
{
	struct res *r = &res[i];
	struct rusage a, b;
	int c = (int)prog[i].a[0];
	flush_out();
	getrusage(RUSAGE_SELF, &a);
	pid_t pid = fork();
	if (pid == 0) {
		me = c;
		close(pm_fd);		/* /proc/self/pagemap is bound to the opener's mm */
		pm_fd = open("/proc/self/pagemap", O_RDONLY);
		if (pm_fd < 0) die("cannot open /proc/self/pagemap");
		int next = take_baton();
		prefault_all();
		getrusage(RUSAGE_SELF, &ru0);
		return next;
	}
	r->used = 1;
	r->ret = pid;
	r->err = pid < 0 ? errno : 0;
	if (pid > 0) pids[c] = pid;
	/* fork's own faults (our pages are copy-on-write now) are not the scenario's */
	prefault_all();
	getrusage(RUSAGE_SELF, &b);
	ru0.ru_minflt += b.ru_minflt - a.ru_minflt;
	ru0.ru_majflt += b.ru_majflt - a.ru_majflt;
	return i + 1;
}

static void __attribute__((noreturn)) do_exit_op(int i)
{
	res[i].used = 1;
	res[i].ret = 0;
	print_mine();
	pass_baton(prog[i + 1].proc, i + 1, getpid());
	_exit((int)prog[i].a[0]);
}

static void do_execve_op(int i)
{
	char a1[16], a2[16], a3[16];
	char *argv[] = { "conform-executor", "--exec", (char *)prog_path, a1, a2, a3, NULL };
	snprintf(a1, sizeof(a1), "%d", me);
	snprintf(a2, sizeof(a2), "%d", i);
	snprintf(a3, sizeof(a3), "%d", (int)main_pid);
	print_mine();
	flush_out();
	execve("/proc/self/exe", argv, environ);
	res[i].used = 1;
	res[i].ret = -1;
	res[i].err = errno;
}

/* ------------------------------------------------------------------ main */
static void setup(void)
{
	cpu_set_t cs;
	CPU_ZERO(&cs);
	CPU_SET(0, &cs);
	if (sched_setaffinity(0, sizeof(cs), &cs)) die("sched_setaffinity");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	pm_fd = open("/proc/self/pagemap", O_RDONLY);
	if (pm_fd < 0) die("cannot open /proc/self/pagemap");
	priv = geteuid() == 0;
	/* learn the zero page's PFN (0 when unprivileged: PFNs are hidden) */
	char *z = mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	(void)*(volatile char *)z;
	if (pread(pm_fd, pm, 8, (off_t)((uintptr_t)z / PG) * 8) == 8 && (pm[0] >> 63))
		zero_pfn = pm[0] & ((1ULL << 55) - 1);
	munmap(z, PG);
	brk_base = ((uintptr_t)syscall(SYS_brk, 0) + PG - 1) & ~(PG - 1);
	if (nprocs > 1) {
		for (int q = 0; q < nprocs; q++) {
			int fd[2];
			if (pipe(fd) || dup2(fd[0], BATFD(q, 0)) < 0 || dup2(fd[1], BATFD(q, 1)) < 0)
				die("baton pipes");
			close(fd[0]);
			close(fd[1]);
		}
		prctl(PR_SET_CHILD_SUBREAPER, 1);
	}
	/* warm every path once, outside any measurement */
	prefault_stack();
	prefault_self();
	read_file("/proc/self/smaps", filebuf, sizeof(filebuf));
	read_file("/proc/vmstat", filebuf, sizeof(filebuf));
	struct res dummy;
	struct op nop = { .kind = O_TOUCH };
	do_touch(&nop, &dummy);
	do_fill(&nop, &dummy, 0);
	getrusage(RUSAGE_SELF, &ru0);
	prefault_stack();
	prefault_self();
}

/* An observation point: returns the op after its endpoint. */
static int do_point(int i)
{
	struct op *o = &prog[i];
	getrusage(RUSAGE_SELF, &ru1);
	print_mine();
	ob("{\"t\":\"point\",\"id\":\"%s\",\"minflt\":%ld,\"majflt\":%ld}\n", o->s1,
	   ru1.ru_minflt - ru0.ru_minflt, ru1.ru_majflt - ru0.ru_majflt);
	const char *id = o->s1;
	for (i++; i < nops && prog[i].kind != O_ENDPOINT; i++) {
		struct op *q = &prog[i];
		if (q->kind == O_SMAPS) obs_smaps((int)q->a[0], id);
		else if (q->kind == O_PAGEMAP) obs_pagemap((int)q->a[0], id);
		else if (q->kind == OF_MINCORE) obs_mincore((int)q->a[0], id);
		else if (q->kind == O_VMSTAT) {
			obs_vmstat(q, id);
			while (i + 1 < nops && prog[i + 1].kind == O_VMSTAT) i++;
		}
	}
	flush_out();
	getrusage(RUSAGE_SELF, &ru0);
	return i + 1;
}

/* Run the program from op i in this process, passing the baton for others' ops. */
static void run_loop(int i)
{
	while (i < nops) {
		struct op *o = &prog[i];
		if (o->proc != me) {
			pass_baton(o->proc, i, 0);
			i = take_baton();
			continue;
		}
		switch (o->kind) {
		case O_POINT: i = do_point(i); break;
		case O_FORK: i = do_fork(i); break;
		case O_EXIT: do_exit_op(i);
		case O_EXECVE: do_execve_op(i); i++; break;
		default: run_op(o, &res[i]); i++; break;
		}
	}
	if (me != 0) {		/* told to finish by the initial process */
		print_mine();
		pass_baton(0, nops, 0);
		_exit(0);
	}
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], "--exec")) {
		/* the program a child execve'd: wait for the baton (to exit) */
		prog_path = argv[2];
		parse_program(argv[2]);
		me = atoi(argv[3]);
		int i = atoi(argv[4]);
		main_pid = (pid_t)atoi(argv[5]);
		res[i].used = 1;
		res[i].ret = 0;
		run_loop(i + 1);
		return 0;
	}
	if (argc < 2) {
		fprintf(stderr, "usage: %s PROGRAM [TMPDIR SHMDIR]\n", argv[0]);
		return 2;
	}
	prog_path = argv[1];
	main_pid = getpid();
	for (int f = 0; f < MAXFILES; f++) fds[f] = -1;
	if (argc >= 4) { fsdir[0] = argv[2]; fsdir[1] = argv[3]; }
	parse_program(argv[1]);
	setup();
	struct utsname u;
	uname(&u);
	ob("{\"t\":\"hdr\",\"priv\":%d,\"zero_pfn\":%llu,\"release\":\"%s\",\"brk_base\":%lu}\n",
	   priv, (unsigned long long)zero_pfn, u.release, (unsigned long)brk_base);
	flush_out();
	getrusage(RUSAGE_SELF, &ru0);
	run_loop(0);
	/* the processes still alive print what they have left and exit, in order */
	int live[MAXPROCS] = {0};
	for (int i = 0; i < nops; i++) {
		if (prog[i].kind == O_FORK) live[prog[i].a[0]] = 1;
		if (prog[i].kind == O_EXIT) live[prog[i].proc] = 0;
	}
	for (int q = 1; q < nprocs; q++) {
		if (!live[q]) continue;
		pass_baton(q, nops, 0);
		take_baton();
	}
	print_mine();
	restore_knobs();
	while (wait(NULL) > 0 || errno == EINTR)
		;
	remove_files();
	ob("{\"t\":\"end\"}\n");
	flush_out();
	return 0;
}
