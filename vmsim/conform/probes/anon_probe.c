/*
 * anon_probe.c - ground-truth probe of the real Linux kernel's anonymous
 * memory behaviour, for comparison with vmsim (Linux 6.18 x86-64 model).
 *
 *   gcc -O2 -static -o anon_probe anon_probe.c
 *   ./anon_probe <scenario>        (./anon_probe list  prints the scenario names)
 *
 * Output: one JSON object per line on stdout, one per observed step.
 *
 * Non-disturbance rules followed here:
 *  - pinned to CPU 0 (sched_setaffinity);
 *  - no mlockall (it would change fault counts); instead at start-up every
 *    page of the program's own mappings (text, rodata, data, bss, heap, vdso)
 *    is touched (read, or read+write-back if writable) and 256 KiB of stack
 *    is pre-faulted, so the measured sections execute only present pages;
 *  - nothing is allocated inside a measured section: all buffers are static
 *    and pre-faulted; smaps/pagemap are read AFTER the measured step;
 *  - a measured step is bracketed by getrusage(RUSAGE_SELF) only; the
 *    'empty' scenario demonstrates that an empty step costs 0 faults;
 *  - forked children repeat the self-prefault (fork does not copy PTEs of
 *    file-backed VMAs without anon_vma, and the COW-shared stack/data would
 *    otherwise take write faults).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

#define PG 4096UL
#define MAXPG 256

/* ------------------------------------------------------------------ */
/* static, pre-faulted buffers                                         */
static char smaps_buf[4 << 20];
static size_t smaps_len;
static char out[1 << 17];
static size_t outlen;
static char extra[1 << 14];
static size_t extralen;
static uint64_t pm_cur[MAXPG];
static uint64_t pm_ref[4][MAXPG];
static int pm_ref_valid[4];
static int pm_fd = -1;
static uint64_t zero_pfn = (uint64_t)-1;
static const char *scn = "";

/* signals */
struct sigrec { int signo, code; uintptr_t addr; };
static struct sigrec sigrec[128];
static volatile int nsig;
static sigjmp_buf jb;
static volatile int jb_armed;

/* measurement */
static struct rusage ru0, ru1;
static int nsig0, nsig1;

/* ------------------------------------------------------------------ */
static void handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	int i = nsig;
	if (i < 128) {
		sigrec[i].signo = sig;
		sigrec[i].code = si->si_code;
		sigrec[i].addr = (uintptr_t)si->si_addr;
	}
	nsig = i + 1;
	if (jb_armed) {
		jb_armed = 0;
		siglongjmp(jb, 1);
	}
	_exit(99);
}

static __attribute__((noinline)) int try_write(volatile char *p, char v)
{
	if (sigsetjmp(jb, 1) == 0) {
		jb_armed = 1;
		*p = v;
		jb_armed = 0;
		return 0;
	}
	return -1;
}

static __attribute__((noinline)) int try_read(volatile char *p)
{
	if (sigsetjmp(jb, 1) == 0) {
		jb_armed = 1;
		(void)*p;
		jb_armed = 0;
		return 0;
	}
	return -1;
}

static __attribute__((noinline)) void m_begin(void)
{
	nsig0 = nsig;
	getrusage(RUSAGE_SELF, &ru0);
}

static __attribute__((noinline)) void m_end(void)
{
	getrusage(RUSAGE_SELF, &ru1);
	nsig1 = nsig;
}

/* ------------------------------------------------------------------ */
static void ob(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void ob(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out + outlen, sizeof(out) - outlen, fmt, ap);
	va_end(ap);
	if (n > 0) outlen += (size_t)n;
	if (outlen >= sizeof(out)) outlen = sizeof(out) - 1;
}

/* extra fields for the current step; reset by report() */
static void ex(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ex(const char *fmt, ...)
{
	va_list ap;
	if (extralen) {
		if (extralen < sizeof(extra) - 1) extra[extralen++] = ',';
	}
	va_start(ap, fmt);
	int n = vsnprintf(extra + extralen, sizeof(extra) - extralen, fmt, ap);
	va_end(ap);
	if (n > 0) extralen += (size_t)n;
	if (extralen >= sizeof(extra)) extralen = sizeof(extra) - 1;
	extra[extralen] = 0;
}

static void flush_out(void)
{
	size_t off = 0;
	while (off < outlen) {
		ssize_t w = write(1, out + off, outlen - off);
		if (w <= 0) break;
		off += (size_t)w;
	}
	outlen = 0;
}

static size_t read_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	size_t len = 0;
	if (fd < 0) return 0;
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

/* ------------------------------------------------------------------ */
/* self prefault                                                       */
struct range { uintptr_t lo, hi; char perm[5]; char name[64]; };
static struct range ranges[256];
static int nranges;

static void parse_maps(void)
{
	smaps_len = read_file("/proc/self/maps", smaps_buf, sizeof(smaps_buf));
	nranges = 0;
	char *s = smaps_buf;
	while (*s && nranges < 256) {
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

/* the program's own mappings, recorded once at start-up (before any scenario
 * mapping exists); later prefaults touch only these */
static struct range own[256];
static int nown = -1;

static __attribute__((noinline)) void prefault_self(void)
{
	if (nown < 0) {
		parse_maps();
		memcpy(own, ranges, sizeof(own));
		nown = nranges;
	}
	for (int i = 0; i < nown; i++) {
		struct range *r = &own[i];
		if (!strcmp(r->name, "[stack]") || !strncmp(r->name, "[vvar", 5) ||
		    !strcmp(r->name, "[vsyscall]"))
			continue;
		if (r->perm[0] != 'r') continue;
		for (uintptr_t a = r->lo; a < r->hi; a += PG) {
			volatile char *c = (volatile char *)a;
			if (r->perm[1] == 'w') {
				char v = *c;
				*c = v;
			} else {
				(void)*c;
			}
		}
	}
}

static __attribute__((noinline)) void prefault_stack(void)
{
	volatile char buf[256 * 1024];
	for (size_t i = 0; i < sizeof(buf); i += PG) buf[i] = 0;
	buf[sizeof(buf) - 1] = 0;
}

static struct range *find_named(const char *name)
{
	for (int i = 0; i < nranges; i++)
		if (!strcmp(ranges[i].name, name)) return &ranges[i];
	return NULL;
}

/* ------------------------------------------------------------------ */
/* smaps                                                               */
static const char *smaps_fields[] = {
	"Size", "Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean",
	"Private_Dirty", "Referenced", "Anonymous", "LazyFree", "AnonHugePages",
	"ShmemPmdMapped", "Swap", "Locked", NULL
};

/* append "smaps":{...} for the VMA containing addr; returns 0 if none */
static int smaps_json(uintptr_t addr)
{
	smaps_len = read_file("/proc/self/smaps", smaps_buf, sizeof(smaps_buf));
	char *s = smaps_buf, *blk = NULL;
	unsigned long lo = 0, hi = 0;
	while (*s) {
		char *nl = strchr(s, '\n');
		unsigned long a, b;
		if (((s[0] >= '0' && s[0] <= '9') || (s[0] >= 'a' && s[0] <= 'f')) &&
		    sscanf(s, "%lx-%lx ", &a, &b) == 2) {
			if (addr >= a && addr < b) { blk = nl ? nl + 1 : NULL; lo = a; hi = b; break; }
		}
		if (!nl) break;
		s = nl + 1;
	}
	if (!blk) { ob(",\"smaps\":null"); return 0; }
	ob(",\"smaps\":{\"vma\":\"%lx-%lx\"", lo, hi);
	s = blk;
	while (s && *s) {
		char *nl = strchr(s, '\n');
		if (nl) *nl = 0;
		if (!strncmp(s, "VmFlags:", 8)) {
			char *v = s + 8;
			while (*v == ' ') v++;
			ob(",\"VmFlags\":\"%s\"", v);
			break;
		}
		if (!strncmp(s, "THPeligible:", 12)) {
			ob(",\"THPeligible\":%ld", strtol(s + 12, NULL, 10));
		}
		for (int i = 0; smaps_fields[i]; i++) {
			size_t l = strlen(smaps_fields[i]);
			if (!strncmp(s, smaps_fields[i], l) && s[l] == ':') {
				ob(",\"%s\":%ld", smaps_fields[i], strtol(s + l + 1, NULL, 10));
				break;
			}
		}
		if (!nl) break;
		s = nl + 1;
	}
	ob("}");
	return 1;
}

/* "key":[...] VMAs intersecting [lo,hi), appended to the step's extra fields */
static char mapsj[8192];
static void maps_json(const char *key, uintptr_t lo, uintptr_t hi)
{
	parse_maps();
	size_t l = 0;
	l += (size_t)snprintf(mapsj + l, sizeof(mapsj) - l, "\"%s\":[", key);
	int first = 1;
	for (int i = 0; i < nranges && l < sizeof(mapsj) - 200; i++) {
		if (ranges[i].hi <= lo || ranges[i].lo >= hi) continue;
		l += (size_t)snprintf(mapsj + l, sizeof(mapsj) - l, "%s\"%lx-%lx %s %s\"",
				      first ? "" : ",", (unsigned long)ranges[i].lo,
				      (unsigned long)ranges[i].hi, ranges[i].perm, ranges[i].name);
		first = 0;
	}
	snprintf(mapsj + l, sizeof(mapsj) - l, "]");
	ex("%s", mapsj);
}

/* ------------------------------------------------------------------ */
/* pagemap                                                             */
#define PM_PFN(x) ((x) & ((1ULL << 55) - 1))
#define PM_SOFTDIRTY (1ULL << 55)
#define PM_EXCL (1ULL << 56)
#define PM_UFFD_WP (1ULL << 57)
#define PM_GUARD (1ULL << 58)
#define PM_FILE (1ULL << 61)
#define PM_SWAP (1ULL << 62)
#define PM_PRESENT (1ULL << 63)

static int pagemap_read(uintptr_t addr, int n)
{
	if (n > MAXPG) n = MAXPG;
	ssize_t r = pread(pm_fd, pm_cur, (size_t)n * 8, (off_t)(addr / PG) * 8);
	return r == (ssize_t)n * 8 ? n : -1;
}

/* append "pm":{...}; compare to / update reference slot */
static void pagemap_json(uintptr_t addr, int n, int slot)
{
	if (n > MAXPG) n = MAXPG;
	if (pagemap_read(addr, n) < 0) { ob(",\"pm\":null"); return; }
	int present = 0, swap = 0, file = 0, excl = 0, sd = 0, zero = 0, same = 0, diff = 0;
	uint64_t orflags = 0;
	ob(",\"pm\":{\"pages\":\"");
	for (int i = 0; i < n; i++) {
		uint64_t e = pm_cur[i];
		uint64_t pfn = PM_PFN(e);
		orflags |= e & ~((1ULL << 55) - 1);
		char t[5];
		t[0] = (e & PM_PRESENT) ? 'P' : (e & PM_SWAP) ? 'S' : '-';
		t[1] = (e & PM_FILE) ? 'f' : '.';
		t[2] = (e & PM_EXCL) ? 'x' : '.';
		if (!(e & PM_PRESENT)) t[3] = '.';
		else if (pfn == zero_pfn) t[3] = 'Z';
		else if (pm_ref_valid[slot] && (pm_ref[slot][i] & PM_PRESENT) &&
			 PM_PFN(pm_ref[slot][i]) == pfn) t[3] = 's';
		else t[3] = 'n';
		t[4] = 0;
		if (e & PM_PRESENT) present++;
		if (e & PM_SWAP) swap++;
		if (e & PM_FILE) file++;
		if (e & PM_EXCL) excl++;
		if (e & PM_SOFTDIRTY) sd++;
		if ((e & PM_PRESENT) && pfn == zero_pfn) zero++;
		if (t[3] == 's') same++;
		if ((e & PM_PRESENT) && pm_ref_valid[slot] && (pm_ref[slot][i] & PM_PRESENT) &&
		    PM_PFN(pm_ref[slot][i]) != pfn) diff++;
		ob("%s%s", i ? " " : "", t);
	}
	ob("\",\"present\":%d,\"swap\":%d,\"file_or_shanon\":%d,\"exclusive\":%d,"
	   "\"softdirty\":%d,\"zeropage\":%d,\"pfn_same_as_ref\":%d,\"pfn_changed_vs_ref\":%d,"
	   "\"ref_valid\":%s,\"flag_bits_or\":\"0x%016llx\"}",
	   present, swap, file, excl, sd, zero, same, diff, pm_ref_valid[slot] ? "true" : "false",
	   (unsigned long long)orflags);
	memcpy(pm_ref[slot], pm_cur, (size_t)n * 8);
	pm_ref_valid[slot] = 1;
}

/* ------------------------------------------------------------------ */
/* one output line per step                                            */
static void report(const char *step, void *map, int npages, int slot)
{
	ob("{\"scenario\":\"%s\",\"step\":\"%s\",\"pid\":%d,\"minflt\":%ld,\"majflt\":%ld",
	   scn, step, (int)getpid(), ru1.ru_minflt - ru0.ru_minflt,
	   ru1.ru_majflt - ru0.ru_majflt);
	int ns = nsig1 - nsig0;
	ob(",\"nsig\":%d", ns);
	if (ns > 0) {
		struct sigrec *r = &sigrec[nsig0 < 128 ? nsig0 : 127];
		int samecode = 1;
		for (int i = nsig0 + 1; i < nsig1 && i < 128; i++)
			if (sigrec[i].code != r->code || sigrec[i].signo != r->signo) samecode = 0;
		ob(",\"sig\":{\"signo\":%d,\"signame\":\"%s\",\"si_code\":%d,\"si_addr\":\"0x%lx\"",
		   r->signo, r->signo == SIGSEGV ? "SIGSEGV" : r->signo == SIGBUS ? "SIGBUS" : "?",
		   r->code, (unsigned long)r->addr);
		if (map) ob(",\"si_addr_off\":%ld", (long)(r->addr - (uintptr_t)map));
		ob(",\"all_same\":%s}", samecode ? "true" : "false");
	}
	if (map) {
		ob(",\"addr\":\"0x%lx\",\"npages\":%d", (unsigned long)map, npages);
		smaps_json((uintptr_t)map);
		if (npages > 0) pagemap_json((uintptr_t)map, npages, slot < 0 ? 0 : slot);
	}
	if (extralen) ob(",%s", extra);
	ob("}\n");
	extralen = 0;
	extra[0] = 0;
	flush_out();
}

static void info(const char *step)
{
	ob("{\"scenario\":\"%s\",\"step\":\"%s\"", scn, step);
	if (extralen) ob(",%s", extra);
	ob("}\n");
	extralen = 0;
	extra[0] = 0;
	flush_out();
}

/* ------------------------------------------------------------------ */
/* helpers                                                             */
static char *map_anon(size_t npages, int prot, int flags)
{
	void *p = mmap(NULL, npages * PG, prot, flags | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) { perror("mmap"); exit(2); }
	return p;
}
#define PRIV (MAP_PRIVATE)
#define RW (PROT_READ | PROT_WRITE)

static __attribute__((noinline)) void wr_pages(char *p, int from, int to, int stride, char v)
{
	for (int i = from; i < to; i += stride) ((volatile char *)p)[(size_t)i * PG] = v;
}

static __attribute__((noinline)) long rd_pages(char *p, int from, int to)
{
	long s = 0;
	for (int i = from; i < to; i++) s += ((volatile char *)p)[(size_t)i * PG];
	return s;
}

/* count bytes != v in whole pages [from,to) (reads the whole pages) */
static __attribute__((noinline)) long count_ne(char *p, int from, int to, char v)
{
	long c = 0;
	for (size_t i = (size_t)from * PG; i < (size_t)to * PG; i++)
		if (((volatile char *)p)[i] != v) c++;
	return c;
}

static void learn_zero_pfn(void)
{
	char *z = map_anon(1, PROT_READ, PRIV);
	(void)*(volatile char *)z;
	if (pagemap_read((uintptr_t)z, 1) == 1 && (pm_cur[0] & PM_PRESENT))
		zero_pfn = PM_PFN(pm_cur[0]);
	munmap(z, PG);
}

static void setup(void)
{
	cpu_set_t cs;
	CPU_ZERO(&cs);
	CPU_SET(0, &cs);
	if (sched_setaffinity(0, sizeof(cs), &cs)) perror("sched_setaffinity");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	pm_fd = open("/proc/self/pagemap", O_RDONLY);
	if (pm_fd < 0) { perror("pagemap"); exit(2); }
	setvbuf(stdout, NULL, _IONBF, 0);
	/* warm every code path once (outside any measurement) */
	prefault_stack();
	prefault_self();
	learn_zero_pfn();
	smaps_json((uintptr_t)smaps_buf);
	outlen = 0;
	m_begin(); m_end();
	prefault_stack();
	prefault_self();
}

/* re-establish non-disturbance after fork() in the child */
static void child_setup(void)
{
	prefault_stack();
	prefault_self();
	close(pm_fd);
	pm_fd = open("/proc/self/pagemap", O_RDONLY);
	smaps_json((uintptr_t)smaps_buf);
	outlen = 0;
	m_begin(); m_end();
	prefault_stack();
	prefault_self();
}

/* ------------------------------------------------------------------ */
/* scenarios                                                           */
static void s_empty(void)
{
	char *p = map_anon(16, RW, PRIV);
	m_begin(); m_end();
	report("empty", p, 16, 0);
	long tot = 0;
	for (int i = 0; i < 100; i++) {
		m_begin(); m_end();
		tot += ru1.ru_minflt - ru0.ru_minflt + ru1.ru_majflt - ru0.ru_majflt;
	}
	ex("\"repeats\":100,\"total_faults\":%ld", tot);
	m_begin(); m_end();
	report("empty_x100", NULL, 0, 0);
}

static void s_write_touch(void)
{
	char *p = map_anon(16, RW, PRIV);
	m_begin(); wr_pages(p, 0, 16, 1, 1); m_end();
	report("write", p, 16, 0);
}

static void s_read_touch(void)
{
	char *p = map_anon(16, RW, PRIV);
	long s;
	m_begin(); s = rd_pages(p, 0, 16); m_end();
	ex("\"sum\":%ld", s);
	report("read", p, 16, 0);
}

static void s_read_then_write(void)
{
	char *p = map_anon(16, RW, PRIV);
	m_begin(); rd_pages(p, 0, 16); m_end();
	report("read", p, 16, 0);
	m_begin(); wr_pages(p, 0, 16, 1, 1); m_end();
	report("write", p, 16, 0);
}

static void s_strided_write(void)
{
	char *p = map_anon(64, RW, PRIV);
	m_begin(); wr_pages(p, 0, 64, 4, 1); m_end();
	report("write_every_4th", p, 64, 0);
}

static void s_dontneed_retouch(void)
{
	char *p = map_anon(16, RW, PRIV);
	int rc, e;
	m_begin(); wr_pages(p, 0, 16, 1, 0x5a); m_end();
	report("write", p, 16, 0);
	m_begin(); rc = madvise(p, 16 * PG, MADV_DONTNEED); e = errno; m_end();
	ex("\"rc\":%d,\"errno\":%d", rc, rc ? e : 0);
	report("madv_dontneed", p, 16, 0);
	m_begin(); wr_pages(p, 0, 16, 1, 0x5b); m_end();
	report("write_again", p, 16, 0);
	m_begin(); rc = madvise(p, 16 * PG, MADV_DONTNEED); m_end();
	ex("\"rc\":%d", rc);
	report("madv_dontneed_2", p, 16, 0);
	long ne;
	m_begin(); rd_pages(p, 0, 16); m_end();
	ne = count_ne(p, 0, 16, 0);
	ex("\"nonzero_bytes_after_dontneed\":%ld,\"data_reads_zero\":%s", ne, ne ? "false" : "true");
	report("read_check_zero", p, 16, 0);
}

static void s_madv_free(void)
{
	char *p = map_anon(16, RW, PRIV);
	int rc;
	m_begin(); memset(p, 0x33, 16 * PG); m_end();   /* whole pages written */
	report("write", p, 16, 0);
	m_begin(); rc = madvise(p, 16 * PG, MADV_FREE); m_end();
	ex("\"rc\":%d", rc);
	report("madv_free", p, 16, 0);
	/* folio_mark_lazyfree() goes through a per-CPU folio batch; smaps LazyFree
	 * (anon && !swapbacked) only shows after that batch drains.  Unmapping an
	 * unrelated touched page runs free_pages_and_swap_cache() -> lru_add_drain()
	 * on this CPU (we are pinned to CPU 0). */
	char *o = map_anon(1, RW, PRIV);
	wr_pages(o, 0, 1, 1, 1);
	munmap(o, PG);
	m_begin(); m_end();
	report("after_munmap_of_other_page", p, 16, 0);
	o = map_anon(1, RW, PRIV);
	wr_pages(o, 0, 1, 1, 1);
	mlock(o, PG);
	munlock(o, PG);
	munmap(o, PG);
	m_begin(); m_end();
	report("after_mlock_munlock_of_other_page", p, 16, 0);
	long ne;
	m_begin(); rd_pages(p, 0, 16); m_end();
	ne = count_ne(p, 0, 16, 0x33);
	ex("\"bytes_changed\":%ld,\"data_still_there\":%s", ne, ne ? "false" : "true");
	report("read", p, 16, 0);
	m_begin(); wr_pages(p, 0, 1, 1, 0x44); m_end();
	report("write_one_page", p, 16, 0);
}

static void s_madv_free_64(void)
{
	char *p = map_anon(64, RW, PRIV);
	int rc;
	m_begin(); wr_pages(p, 0, 64, 1, 1); m_end();
	report("write", p, 64, 0);
	m_begin(); rc = madvise(p, 64 * PG, MADV_FREE); m_end();
	ex("\"rc\":%d", rc);
	report("madv_free(no drain)", p, 64, 0);
	char *o = map_anon(1, RW, PRIV);
	wr_pages(o, 0, 1, 1, 1);
	munmap(o, PG);
	m_begin(); m_end();
	report("after_munmap_of_other_page", p, 64, 0);
	o = map_anon(1, RW, PRIV);
	wr_pages(o, 0, 1, 1, 1);
	mlock(o, PG);
	munlock(o, PG);
	munmap(o, PG);
	m_begin(); m_end();
	report("after_mlock_munlock_of_other_page", p, 64, 0);
}

static void s_mprotect_write(void)
{
	char *p = map_anon(16, RW, PRIV);
	int rc, fails = 0;
	m_begin(); wr_pages(p, 0, 16, 1, 1); m_end();
	report("write", p, 16, 0);
	m_begin(); rc = mprotect(p, 16 * PG, PROT_READ); m_end();
	ex("\"rc\":%d", rc);
	report("mprotect_ro", p, 16, 0);
	m_begin();
	for (int i = 0; i < 16; i++) fails += try_write(p + i * PG, 2) != 0;
	m_end();
	ex("\"failed_writes\":%d", fails);
	report("write_ro_attempt", p, 16, 0);
	m_begin(); rc = mprotect(p, 16 * PG, RW); m_end();
	ex("\"rc\":%d", rc);
	report("mprotect_rw", p, 16, 0);
	m_begin(); wr_pages(p, 0, 16, 1, 3); m_end();
	report("write_again", p, 16, 0);
}

static void s_map_populate(void)
{
	char *p;
	m_begin();
	p = mmap(NULL, 16 * PG, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	m_end();
	report("mmap_populate", p, 16, 0);
	m_begin(); wr_pages(p, 0, 16, 1, 1); m_end();
	report("write", p, 16, 0);
}

static void s_madv_populate(int write)
{
	char *p = map_anon(16, RW, PRIV);
	int rc, e;
	m_begin();
	rc = madvise(p, 16 * PG, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
	e = errno;
	m_end();
	ex("\"rc\":%d,\"errno\":%d", rc, rc ? e : 0);
	report(write ? "madv_populate_write" : "madv_populate_read", p, 16, 0);
	m_begin(); wr_pages(p, 0, 16, 1, 1); m_end();
	report("write", p, 16, 0);
}

static void errno_case(const char *name, void *p, size_t len, int adv, int npg)
{
	int rc, e;
	m_begin(); rc = madvise(p, len, adv); e = errno; m_end();
	ex("\"rc\":%d,\"errno\":%d,\"errname\":\"%s\"", rc, rc ? e : 0,
	   rc == 0 ? "" : e == EINVAL ? "EINVAL" : e == EFAULT ? "EFAULT" : e == ENOMEM ? "ENOMEM" :
	   e == EPERM ? "EPERM" : e == EHWPOISON ? "EHWPOISON" : "other");
	report(name, p, npg, 0);
}

static void s_madv_populate_errno(void)
{
	char *r = map_anon(16, PROT_READ, PRIV);
	errno_case("populate_write_on_PROT_READ", r, 16 * PG, MADV_POPULATE_WRITE, 16);
	char *w = map_anon(16, PROT_WRITE, PRIV);
	errno_case("populate_read_on_PROT_WRITE_only", w, 16 * PG, MADV_POPULATE_READ, 16);
	char *w2 = map_anon(16, PROT_WRITE, PRIV);
	errno_case("populate_write_on_PROT_WRITE_only", w2, 16 * PG, MADV_POPULATE_WRITE, 16);
	char *n = map_anon(16, PROT_NONE, PRIV);
	errno_case("populate_read_on_PROT_NONE", n, 16 * PG, MADV_POPULATE_READ, 16);
	char *h = map_anon(16, RW, PRIV);
	munmap(h + 4 * PG, 4 * PG);
	errno_case("populate_read_range_with_hole", h, 16 * PG, MADV_POPULATE_READ, 16);
	char *h2 = map_anon(16, RW, PRIV);
	munmap(h2 + 4 * PG, 4 * PG);
	errno_case("populate_write_range_with_hole", h2, 16 * PG, MADV_POPULATE_WRITE, 16);
	char *u = map_anon(16, RW, PRIV);
	errno_case("populate_write_unaligned_start", u + 1, 4 * PG, MADV_POPULATE_WRITE, 16);
}

static void s_mlock(void)
{
	char *p = map_anon(16, RW, PRIV);
	int rc;
	m_begin(); rc = mlock(p, 16 * PG); m_end();
	ex("\"rc\":%d", rc);
	report("mlock", p, 16, 0);
	m_begin(); wr_pages(p, 0, 16, 1, 1); m_end();
	report("write", p, 16, 0);
	m_begin(); rc = munlock(p, 16 * PG); m_end();
	ex("\"rc\":%d", rc);
	report("munlock", p, 16, 0);
}

static void s_mremap_move(void)
{
	char *p = map_anon(16, RW, PRIV);
	char *dst = map_anon(16, PROT_NONE, PRIV); /* reserve a destination */
	char *q;
	m_begin();
	for (int i = 0; i < 16; i++) memset(p + i * PG, 0x40 + i, PG);
	m_end();
	report("write_pattern", p, 16, 0);
	m_begin();
	q = mremap(p, 16 * PG, 16 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	m_end();
	ex("\"new\":\"0x%lx\",\"old\":\"0x%lx\",\"moved_to_dst\":%s", (unsigned long)q,
	   (unsigned long)p, q == dst ? "true" : "false");
	maps_json("old_range_vmas", (uintptr_t)p, (uintptr_t)p + 16 * PG);
	report("mremap_fixed", q, 16, 0);
	long bad = 0;
	m_begin(); rd_pages(q, 0, 16); m_end();
	for (int i = 0; i < 16; i++) bad += count_ne(q, i, i + 1, (char)(0x40 + i));
	ex("\"bad_bytes\":%ld,\"data_ok\":%s", bad, bad ? "false" : "true");
	report("read_new", q, 16, 0);
}

static void s_mremap_grow(int inplace)
{
	char *p, *q;
	if (inplace) {
		p = map_anon(32, RW, PRIV);
		munmap(p + 16 * PG, 16 * PG);
	} else {
		p = map_anon(16, RW, PRIV);
	}
	m_begin(); wr_pages(p, 0, 16, 1, 7); m_end();
	maps_json("vmas_after_p", (uintptr_t)p + 16 * PG, (uintptr_t)p + 17 * PG);
	report("write_first16", p, 16, 0);
	m_begin(); q = mremap(p, 16 * PG, 32 * PG, MREMAP_MAYMOVE); m_end();
	ex("\"new\":\"0x%lx\",\"old\":\"0x%lx\",\"moved\":%s", (unsigned long)q, (unsigned long)p,
	   q == p ? "false" : "true");
	report("mremap_grow_16_to_32", q, 32, 0);
	m_begin(); wr_pages(q, 16, 32, 1, 8); m_end();
	report("write_new_half", q, 32, 0);
	long s;
	m_begin(); s = rd_pages(q, 0, 16); m_end();
	ex("\"old_half_sum\":%ld,\"expect\":%d", s, 16 * 7);
	report("read_old_half", q, 32, 0);
}

static void s_mremap_dontunmap(void)
{
	char *p = map_anon(5, RW, PRIV), *q;
	m_begin(); memset(p, 'a', 5 * PG); m_end();
	report("write_a", p, 5, 0);
	m_begin();
	q = mremap(p, 5 * PG, 5 * PG, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);
	m_end();
	ex("\"new\":\"0x%lx\",\"errno\":%d", (unsigned long)q, q == MAP_FAILED ? errno : 0);
	maps_json("src_vmas", (uintptr_t)p, (uintptr_t)p + 5 * PG);
	report("mremap_dontunmap(src)", p, 5, 0);
	if (q == MAP_FAILED) return;
	m_begin(); m_end();
	report("observe_dst", q, 5, 1);
	long ne;
	m_begin(); rd_pages(p, 0, 5); m_end();
	ne = count_ne(p, 0, 5, 0);
	ex("\"nonzero_bytes\":%ld,\"src_reads_zero\":%s", ne, ne ? "false" : "true");
	report("read_src", p, 5, 0);
	m_begin(); rd_pages(q, 0, 5); m_end();
	ne = count_ne(q, 0, 5, 'a');
	ex("\"non_a_bytes\":%ld,\"dst_reads_a\":%s", ne, ne ? "false" : "true");
	report("read_dst", q, 5, 1);
}

/* -------- stack -------- */
static __attribute__((noinline)) int deep(int n, int (*fn)(void))
{
	volatile char pad[512];
	pad[0] = (char)n;
	if (n > 0) return deep(n - 1, fn) + pad[0];
	return fn();
}

static uintptr_t stk_lo, stk_hi;
static int stack_walk_fn(void)
{
	/* touch 64 pages progressively downward starting right below the stack VMA */
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
	uintptr_t start = stk_lo - PG;
	m_begin();
	for (int i = 0; i < 64; i++) *(volatile char *)(start - (uintptr_t)i * PG) = 1;
	m_end();
	ex("\"sp\":\"0x%lx\",\"stack_vma_before\":\"%lx-%lx\",\"first_touch\":\"0x%lx\","
	   "\"below_sp_bytes_first\":%lu", (unsigned long)sp, (unsigned long)stk_lo,
	   (unsigned long)stk_hi, (unsigned long)start, (unsigned long)(sp - start));
	return 0;
}

static int stack_jump_fn(void)
{
	uintptr_t target = stk_lo - 1024 * 1024;
	int r;
	m_begin(); r = try_write((volatile char *)target, 1); m_end();
	ex("\"target\":\"0x%lx\",\"jump_below_vma\":%d,\"ok\":%s", (unsigned long)target,
	   1024 * 1024, r == 0 ? "true" : "false");
	return 0;
}

static void s_stack_growth(void)
{
	/* part 1: RLIMIT_STACK = 1 MiB in a forked child; reported by the parent */
	int pfd[2];
	if (pipe(pfd)) { perror("pipe"); exit(2); }
	pid_t pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		child_setup();
		struct rlimit rl = { 1 << 20, 1 << 20 };
		int rc = setrlimit(RLIMIT_STACK, &rl);
		parse_maps();
		struct range *st = find_named("[stack]");
		uintptr_t top = st->hi, lo = st->lo;
		int r1, r2;
		uintptr_t a1 = top - 900 * 1024, a2 = top - 2 * 1024 * 1024;
		m_begin(); r1 = try_write((volatile char *)a1, 1); m_end();
		long f1 = ru1.ru_minflt - ru0.ru_minflt;
		int s1 = nsig1 - nsig0;
		m_begin(); r2 = try_write((volatile char *)a2, 1); m_end();
		long f2 = ru1.ru_minflt - ru0.ru_minflt;
		int s2 = nsig1 - nsig0;
		struct sigrec sr = s2 ? sigrec[nsig0] : (struct sigrec){0, 0, 0};
		parse_maps();
		st = find_named("[stack]");
		char buf[1024];
		int n = snprintf(buf, sizeof(buf),
			"\"child_setrlimit_rc\":%d,\"rlimit_stack\":1048576,\"stack_vma_at_start\":\"%lx-%lx\","
			"\"touch_top_minus_900KiB\":{\"addr\":\"0x%lx\",\"ok\":%s,\"minflt\":%ld,\"nsig\":%d},"
			"\"touch_top_minus_2MiB\":{\"addr\":\"0x%lx\",\"ok\":%s,\"minflt\":%ld,\"nsig\":%d,"
			"\"signo\":%d,\"si_code\":%d,\"si_addr\":\"0x%lx\"},\"stack_vma_after\":\"%lx-%lx\"",
			rc, (unsigned long)lo, (unsigned long)top, (unsigned long)a1, r1 ? "false" : "true",
			f1, s1, (unsigned long)a2, r2 ? "false" : "true", f2, s2, sr.signo, sr.code,
			(unsigned long)sr.addr, (unsigned long)st->lo, (unsigned long)st->hi);
		if (write(pfd[1], buf, (size_t)n) < 0) _exit(3);
		_exit(0);
	}
	close(pfd[1]);
	char buf[1024];
	ssize_t n = read(pfd[0], buf, sizeof(buf) - 1);
	int status;
	waitpid(pid, &status, 0);
	buf[n > 0 ? n : 0] = 0;
	ex("%s", buf);
	ex("\"child_exit_status\":%d", WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
	info("rlimit_1MiB_child");

	/* part 2: progressive growth, 64 pages, from a deep call chain */
	parse_maps();
	struct range *st = find_named("[stack]");
	stk_lo = st->lo; stk_hi = st->hi;
	deep(16, stack_walk_fn);
	parse_maps();
	st = find_named("[stack]");
	ex("\"stack_vma_after\":\"%lx-%lx\"", (unsigned long)st->lo, (unsigned long)st->hi);
	report("touch_64_pages_below_vma", (void *)(stk_lo - 64 * PG), 64, 0);

	/* part 3: a single jump 1 MiB below the (grown) stack VMA, 8 MiB limit */
	stk_lo = st->lo; stk_hi = st->hi;
	deep(4, stack_jump_fn);
	parse_maps();
	st = find_named("[stack]");
	ex("\"stack_vma_after\":\"%lx-%lx\"", (unsigned long)st->lo, (unsigned long)st->hi);
	report("touch_1MiB_below_vma", (void *)st->lo, 4, 0);
	struct rlimit rl;
	getrlimit(RLIMIT_STACK, &rl);
	ex("\"rlimit_stack_cur\":%ld", (long)rl.rlim_cur);
	info("rlimit");
}

/* -------- brk -------- */
static void s_brk(void)
{
	uintptr_t cur = (uintptr_t)syscall(SYS_brk, 0);
	uintptr_t base = (cur + PG - 1) & ~(PG - 1);
	parse_maps();
	struct range *h = find_named("[heap]");
	uintptr_t heap_lo = h ? h->lo : 0;
	ex("\"brk0\":\"0x%lx\",\"sbrk0\":\"0x%lx\",\"heap_vma\":\"%lx-%lx\"", (unsigned long)cur,
	   (unsigned long)sbrk(0), h ? (unsigned long)h->lo : 0UL, h ? (unsigned long)h->hi : 0UL);
	info("initial");
	uintptr_t r;
	m_begin(); r = (uintptr_t)syscall(SYS_brk, base + 16 * PG); m_end();
	ex("\"requested\":\"0x%lx\",\"returned\":\"0x%lx\"", (unsigned long)(base + 16 * PG),
	   (unsigned long)r);
	maps_json("heap_vmas", heap_lo ? heap_lo : base, base + 16 * PG);
	report("brk_grow_16", (void *)base, 16, 0);
	m_begin(); wr_pages((char *)base, 0, 16, 1, 1); m_end();
	report("write_16", (void *)base, 16, 0);
	m_begin(); r = (uintptr_t)syscall(SYS_brk, base); m_end();
	ex("\"requested\":\"0x%lx\",\"returned\":\"0x%lx\"", (unsigned long)base, (unsigned long)r);
	maps_json("heap_vmas", heap_lo ? heap_lo : base, base + 16 * PG);
	report("brk_shrink", NULL, 0, 0);
	int fails = 0;
	m_begin();
	for (int i = 0; i < 16; i++) fails += try_write((char *)base + i * PG, 1) != 0;
	m_end();
	ex("\"failed_writes\":%d", fails);
	report("access_old_range", (void *)base, 16, 0);
	uintptr_t below = (heap_lo ? heap_lo : base) - 16 * PG;
	m_begin(); r = (uintptr_t)syscall(SYS_brk, below); m_end();
	ex("\"requested\":\"0x%lx\",\"returned\":\"0x%lx\",\"returned_equals_current_brk\":%s",
	   (unsigned long)below, (unsigned long)r, r == base ? "true" : "false");
	report("brk_below_heap_start", NULL, 0, 0);
	m_begin(); r = (uintptr_t)syscall(SYS_brk, 0); m_end();
	ex("\"returned\":\"0x%lx\"", (unsigned long)r);
	report("brk_0", NULL, 0, 0);
}

/* -------- shared anonymous -------- */
static void s_shared_anon(void)
{
	char *a = map_anon(16, RW, MAP_SHARED);
	m_begin(); rd_pages(a, 0, 16); m_end();
	report("A_read", a, 16, 0);
	m_begin(); wr_pages(a, 0, 16, 1, 1); m_end();
	report("A_write_after_read", a, 16, 0);

	char *b = map_anon(16, RW, MAP_SHARED);
	m_begin(); wr_pages(b, 0, 16, 1, 1); m_end();
	report("B_fresh_write", b, 16, 1);

	char *c = map_anon(64, RW, MAP_SHARED);
	m_begin(); wr_pages(c, 0, 64, 1, 9); m_end();
	report("C_write_64", c, 64, 2);

	pid_t pid = fork();
	if (pid == 0) {
		child_setup();
		long s;
		m_begin(); s = rd_pages(c, 0, 64); m_end();
		ex("\"sum\":%ld,\"expect\":%d", s, 64 * 9);
		report("C_child_read_64(fork_after_write)", c, 64, 2);
		m_begin(); wr_pages(c, 0, 64, 1, 10); m_end();
		report("C_child_write_64_after_read", c, 64, 2);
		_exit(0);
	}
	int status;
	waitpid(pid, &status, 0);
	m_begin(); m_end();
	ex("\"child_status\":%d", status);
	report("C_parent_after_child", c, 64, 2);

	/* second child without prior parent-side touches of some pages: parent wrote all */
	char *d = map_anon(64, RW, MAP_SHARED);
	wr_pages(d, 0, 64, 4, 1); /* only every 4th page in the page cache */
	pid = fork();
	if (pid == 0) {
		child_setup();
		m_begin(); rd_pages(d, 0, 64); m_end();
		report("D_child_read_64(parent_wrote_every_4th)", d, 64, 3);
		_exit(0);
	}
	waitpid(pid, &status, 0);

	/* E: like C but the mapping starts on a 64 KiB (16-page) boundary, so the
	 * fault-around windows (fault_around_bytes=64K, aligned in the address
	 * space and clipped to the VMA) coincide with 16-page blocks of the VMA */
	char *res = map_anon(128, PROT_NONE, PRIV);
	char *e = (char *)(((uintptr_t)res + 16 * PG - 1) & ~(16 * PG - 1));
	e = mmap(e, 64 * PG, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	m_begin(); wr_pages(e, 0, 64, 1, 9); m_end();
	ex("\"aligned_64KiB\":%s", ((uintptr_t)e & (16 * PG - 1)) ? "false" : "true");
	report("E_write_64_aligned", e, 64, 0);
	pid = fork();
	if (pid == 0) {
		child_setup();
		m_begin(); rd_pages(e, 0, 64); m_end();
		report("E_child_read_64_aligned(fork_after_write)", e, 64, 0);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	/* F: the child reads only page 5 of the aligned mapping: which PTEs appear */
	pid = fork();
	if (pid == 0) {
		child_setup();
		m_begin(); rd_pages(e, 5, 6); m_end();
		report("F_child_read_page5_aligned", e, 64, 0);
		_exit(0);
	}
	waitpid(pid, &status, 0);
}

/* -------- bad addresses -------- */
static void bad_access(const char *name, uintptr_t a, int write)
{
	int r;
	m_begin(); r = write ? try_write((volatile char *)a, 1) : try_read((volatile char *)a); m_end();
	ex("\"target\":\"0x%lx\",\"access\":\"%s\",\"ok\":%s", (unsigned long)a,
	   write ? "write" : "read", r ? "false" : "true");
	report(name, NULL, 0, 0);
}

static void s_noncanonical(void)
{
	bad_access("read_0x800000000000(noncanonical)", 0x800000000000UL, 0);
	bad_access("write_0x800000000000(noncanonical)", 0x800000000000UL, 1);
	bad_access("read_0xffff800000000000(kernel)", 0xffff800000000000UL, 0);
	bad_access("read_0xffffffff81000000(kernel text)", 0xffffffff81000000UL, 0);
	bad_access("read_0x7ffffffff000(last user page, unmapped)", 0x7ffffffff000UL, 0);
	bad_access("read_NULL", 0, 0);
	bad_access("read_vsyscall_0xffffffffff600000", 0xffffffffff600000UL, 0);
	bad_access("read_0x00007fffffffffff+1-1(top byte, unmapped)", 0x7fffffffffffUL, 0);
}

static void s_munmap_partial(void)
{
	char *p = map_anon(16, RW, PRIV);
	int rc;
	m_begin(); wr_pages(p, 0, 16, 1, 1); m_end();
	report("write", p, 16, 0);
	m_begin(); rc = munmap(p + 4 * PG, 4 * PG); m_end();
	ex("\"rc\":%d", rc);
	maps_json("vmas", (uintptr_t)p, (uintptr_t)p + 16 * PG);
	report("munmap_pages_4_7", p, 16, 0);
	m_begin(); m_end();
	report("observe_second_vma", p + 8 * PG, 8, 1);
	int r;
	m_begin(); r = try_write(p + 5 * PG, 1); m_end();
	ex("\"ok\":%s", r ? "false" : "true");
	report("write_page5", p, 16, 0);
}

/* -------- 1 GiB first-touch timing -------- */
static void s_timing_1g(void)
{
	size_t len = 1UL << 30;
	for (int round = 0; round < 3; round++) {
		char *p = mmap(NULL, len, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		madvise(p, len, MADV_NOHUGEPAGE);
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		m_begin();
		for (size_t off = 0; off < len; off += PG) ((volatile char *)p)[off] = 1;
		m_end();
		clock_gettime(CLOCK_MONOTONIC, &t1);
		long ns = (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec);
		long f = ru1.ru_minflt - ru0.ru_minflt;
		ex("\"round\":%d,\"bytes\":%zu,\"pages\":%zu,\"ns_total\":%ld,\"ns_per_fault\":%.1f,"
		   "\"ns_per_page\":%.1f", round, len, len / PG, ns, f ? (double)ns / f : 0.0,
		   (double)ns / (len / PG));
		report("first_touch_write_1GiB_nohugepage", p, 0, 0);
		/* keep the mapping: each round uses a different 1 GiB mapping */
	}
}

/* ------------------------------------------------------------------ */
struct scen { const char *name; void (*fn)(void); };
static void s_madv_populate_read(void) { s_madv_populate(0); }
static void s_madv_populate_write(void) { s_madv_populate(1); }
static void s_mremap_grow_moves(void) { s_mremap_grow(0); }
static void s_mremap_grow_inplace(void) { s_mremap_grow(1); }

static const struct scen scens[] = {
	{ "empty", s_empty },
	{ "write_touch", s_write_touch },
	{ "read_touch", s_read_touch },
	{ "read_then_write", s_read_then_write },
	{ "strided_write", s_strided_write },
	{ "dontneed_retouch", s_dontneed_retouch },
	{ "madv_free", s_madv_free },
	{ "madv_free_64", s_madv_free_64 },
	{ "mprotect_write", s_mprotect_write },
	{ "map_populate", s_map_populate },
	{ "madv_populate_read", s_madv_populate_read },
	{ "madv_populate_write", s_madv_populate_write },
	{ "madv_populate_errno", s_madv_populate_errno },
	{ "mlock", s_mlock },
	{ "mremap_move", s_mremap_move },
	{ "mremap_grow", s_mremap_grow_moves },
	{ "mremap_grow_inplace", s_mremap_grow_inplace },
	{ "mremap_dontunmap", s_mremap_dontunmap },
	{ "stack_growth", s_stack_growth },
	{ "brk", s_brk },
	{ "shared_anon", s_shared_anon },
	{ "noncanonical", s_noncanonical },
	{ "munmap_partial", s_munmap_partial },
	{ "timing_1g", s_timing_1g },
	{ NULL, NULL }
};

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s <scenario>|list|header\n", argv[0]);
		return 1;
	}
	if (!strcmp(argv[1], "list")) {
		for (int i = 0; scens[i].name; i++) printf("%s\n", scens[i].name);
		return 0;
	}
	setup();
	if (!strcmp(argv[1], "header")) {
		struct utsname u;
		uname(&u);
		char b1[256], b2[256], b3[256];
		size_t l;
		l = read_file("/sys/kernel/mm/transparent_hugepage/enabled", b1, sizeof(b1));
		if (l && b1[l - 1] == '\n') b1[l - 1] = 0;
		l = read_file("/sys/kernel/mm/transparent_hugepage/defrag", b2, sizeof(b2));
		if (l && b2[l - 1] == '\n') b2[l - 1] = 0;
		l = read_file("/sys/kernel/mm/transparent_hugepage/shmem_enabled", b3, sizeof(b3));
		if (l && b3[l - 1] == '\n') b3[l - 1] = 0;
		char t[64];
		long rva, ovc, mma;
		read_file("/proc/sys/kernel/randomize_va_space", t, sizeof(t)); rva = strtol(t, NULL, 10);
		read_file("/proc/sys/vm/overcommit_memory", t, sizeof(t)); ovc = strtol(t, NULL, 10);
		read_file("/proc/sys/vm/mmap_min_addr", t, sizeof(t)); mma = strtol(t, NULL, 10);
		printf("{\"header\":true,\"uname_r\":\"%s\",\"uname_v\":\"%s\",\"machine\":\"%s\","
		       "\"thp_enabled\":\"%s\",\"thp_defrag\":\"%s\",\"thp_shmem_enabled\":\"%s\","
		       "\"zero_pfn_known\":%s,\"page_size\":%ld,\"aslr_disabled_personality\":%s,"
		       "\"randomize_va_space\":%ld,\"overcommit_memory\":%ld,\"mmap_min_addr\":%ld,"
		       "\"pinned_cpu\":0}\n",
		       u.release, u.version, u.machine, b1, b2, b3,
		       zero_pfn != (uint64_t)-1 ? "true" : "false", sysconf(_SC_PAGESIZE),
		       (personality(0xffffffff) & ADDR_NO_RANDOMIZE) ? "true" : "false",
		       rva, ovc, mma);
		return 0;
	}
	for (int i = 0; scens[i].name; i++) {
		if (!strcmp(argv[1], scens[i].name)) {
			scn = scens[i].name;
			scens[i].fn();
			return 0;
		}
	}
	fprintf(stderr, "unknown scenario %s\n", argv[1]);
	return 1;
}
