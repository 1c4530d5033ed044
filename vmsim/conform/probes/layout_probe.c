/*
 * layout_probe.c - address-space layout facts of a fresh static process
 * (docs/linux-layout.md).  gcc -O2 -static -o layout_probe layout_probe.c
 *   layout_probe startup            own /proc/self/maps + stack smaps + brk, first thing in main
 *   layout_probe mmap SIZE...       fresh process: mmap(NULL, SIZE, RW, PRIVATE|ANON) in sequence
 *   layout_probe hint               hint handling without MAP_FIXED
 *   layout_probe brk                brk/heap after the first brk grow
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

static char buf[1 << 20];

static size_t slurp(const char *path)
{
	int fd = open(path, O_RDONLY);
	size_t n = 0;
	ssize_t r;
	if (fd < 0) return 0;
	while ((r = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0) n += (size_t)r;
	close(fd);
	buf[n] = 0;
	return n;
}

static void print_stack_smaps(void)
{
	slurp("/proc/self/smaps");
	char *s = strstr(buf, "[stack]");
	if (!s) return;
	while (s > buf && s[-1] != '\n') s--;
	char *e = strstr(s, "VmFlags:");
	if (e) e = strchr(e, '\n');
	if (e) *e = 0;
	printf("--- stack smaps block\n%s\n", s);
}

static void maps(const char *title)
{
	slurp("/proc/self/maps");
	printf("--- %s\n%s", title, buf);
}

int main(int argc, char **argv)
{
	if (argc < 2) return 1;
	if (!strcmp(argv[1], "startup")) {
		/* nothing before this: read maps first */
		slurp("/proc/self/maps");
		static char first[1 << 16];
		strcpy(first, buf);
		uintptr_t b0 = (uintptr_t)syscall(SYS_brk, 0);
		printf("--- /proc/self/maps at start of main\n%s", first);
		print_stack_smaps();
		struct rlimit rl;
		getrlimit(RLIMIT_STACK, &rl);
		printf("RLIMIT_STACK cur=%ld max=%ld\n", (long)rl.rlim_cur, (long)rl.rlim_max);
		printf("brk(0)=0x%lx\n", (unsigned long)b0);
		printf("&argc=%p (stack pointer region)\n", (void *)&argc);
		slurp("/proc/self/stat");
		/* fields 26.. startcode endcode startstack; 46.. start_data end_data start_brk arg_start ... */
		char *p = strrchr(buf, ')') + 2;
		unsigned long f[64] = {0};
		int i = 3;
		char *tok = strtok(p, " ");
		while (tok && i < 60) { f[i] = strtoul(tok, NULL, 10); tok = strtok(NULL, " "); i++; }
		printf("stat: startcode=0x%lx endcode=0x%lx startstack=0x%lx start_data=0x%lx end_data=0x%lx "
		       "start_brk=0x%lx arg_start=0x%lx arg_end=0x%lx env_start=0x%lx env_end=0x%lx\n",
		       f[26], f[27], f[28], f[45], f[46], f[47], f[48], f[49], f[50], f[51]);
		return 0;
	}
	if (!strcmp(argv[1], "brk")) {
		uintptr_t b0 = (uintptr_t)syscall(SYS_brk, 0);
		uintptr_t b1 = (uintptr_t)syscall(SYS_brk, b0 + 4096);
		uintptr_t b2 = (uintptr_t)syscall(SYS_brk, b0 + 0x21000);
		printf("brk(0)=0x%lx brk(+4096)=0x%lx brk(+0x21000)=0x%lx\n", (unsigned long)b0,
		       (unsigned long)b1, (unsigned long)b2);
		maps("maps after brk grow");
		return 0;
	}
	if (!strcmp(argv[1], "mmap")) {
		unsigned long prev = 0;
		for (int i = 2; i < argc; i++) {
			unsigned long len = strtoul(argv[i], NULL, 0);
			void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			unsigned long a = (unsigned long)p;
			printf("mmap(NULL, 0x%lx) = 0x%lx  end=0x%lx  2MiB-aligned=%s  a%%2M=0x%lx  %s\n", len, a,
			       a + len, (a & 0x1fffff) ? "no" : "yes", a & 0x1fffff,
			       prev ? (a + len == prev ? "(adjacent below previous)" : "(gap below previous)") : "");
			prev = a;
		}
		maps("maps after the sequence");
		return 0;
	}
	if (!strcmp(argv[1], "hint")) {
		struct { unsigned long hint, len; int flags; } t[] = {
			{ 0x10000123UL, 4096, 0 },
			{ 0x10000fffUL, 4096, 0 },
			{ 0x10000123UL, 4096, MAP_FIXED },
			{ 0x10000123UL, 4096, MAP_FIXED_NOREPLACE },
			{ 0x20000000UL, 4096, 0 },
			{ 0x20000000UL, 4096, 0 }, /* same hint again: occupied -> ? */
			{ 0x800UL, 4096, 0 },      /* below mmap_min_addr */
			{ 0x800UL, 4096, MAP_FIXED },
			{ 0x30000000UL, 2UL << 20, 0 }, /* 2 MiB with a 2 MiB-aligned hint */
			{ 0x30001000UL, 2UL << 20, 0 }, /* 2 MiB with an unaligned hint */
			{ 0x7ffffffff000UL, 4096, 0 },  /* hint at TASK_SIZE: invalid hint */
		};
		for (unsigned i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
			void *p = mmap((void *)t[i].hint, t[i].len, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS | t[i].flags, -1, 0);
			printf("mmap(hint=0x%lx, len=0x%lx, %s) = %s0x%lx errno=%d\n", t[i].hint, t[i].len,
			       t[i].flags == MAP_FIXED ? "MAP_FIXED" :
			       t[i].flags == MAP_FIXED_NOREPLACE ? "MAP_FIXED_NOREPLACE" : "no MAP_FIXED",
			       p == MAP_FAILED ? "MAP_FAILED " : "", p == MAP_FAILED ? 0UL : (unsigned long)p,
			       p == MAP_FAILED ? errno : 0);
		}
		return 0;
	}
	return 1;
}
