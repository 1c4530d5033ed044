#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
static char *R;
static void show(const char *t) { FILE *f = fopen("/proc/self/smaps", "r"); char l[512]; int in = 0; printf("%s\n", t);
	while (fgets(l, sizeof l, f)) { unsigned long s, e; char perm[8];
		if (sscanf(l, "%lx-%lx %7s ", &s, &e, perm) == 3 && strchr(l, ':') > l + 20) { in = s >= (unsigned long)R && e <= (unsigned long)R + (100 << 12) && perm[0] != '-'; if (in) printf(" [%ld,%ld) %s", (s - (unsigned long)R) >> 12, (e - (unsigned long)R) >> 12, perm); }
		else if (in && !strncmp(l, "VmFlags", 7)) printf("  %s", l + 8); } fclose(f); }
int main(void) {
	setvbuf(stdout, 0, _IONBF, 0);
	R = mmap(0, 100 << 12, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
	#define AT(pg, n, prot) mmap(R + ((pg) << 12), (n) << 12, prot, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)
	AT(1, 4, PROT_READ|PROT_WRITE); AT(5, 4, PROT_READ);
	printf("guard %d\n", madvise(R + (2 << 12), 4096, 102));
	show("A[1,5) gu, B[5,9) r");
	mprotect(R + (5 << 12), 4 << 12, PROT_READ|PROT_WRITE); show("mprotect B rw");
	mprotect(R + (3 << 12), 2 << 12, PROT_READ); show("mprotect [3,5) r");
	mprotect(R + (3 << 12), 2 << 12, PROT_READ|PROT_WRITE); show("back rw");
	AT(20, 2, PROT_READ|PROT_WRITE); AT(22, 2, PROT_READ); madvise(R + (22 << 12), 4096, 102);
	show("C[20,22) rw, D[22,24) r gu");
	mprotect(R + (22 << 12), 2 << 12, PROT_READ|PROT_WRITE); show("mprotect D rw (merge into C, middle gu)");
	AT(40, 4, PROT_READ|PROT_WRITE); madvise(R + (41 << 12), 4096, 102);
	AT(44, 2, PROT_READ|PROT_WRITE); show("E[40,44) rw gu, then a new rw mapping at [44,46)");
	return 0;
}
