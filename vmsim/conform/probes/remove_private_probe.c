#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>
#include <sys/mman.h>
int main(void) {
	int fd = memfd_create("x", 0); ftruncate(fd, 4 << 12);
	char *s = mmap(0, 4 << 12, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0);
	for (int i = 0; i < 4; i++) s[i << 12] = 'A';
	char *p = mmap(0, 4 << 12, PROT_READ|PROT_WRITE, MAP_PRIVATE, fd, 0);
	char r0 = p[0]; p[1 << 12] = 'B';
	printf("before: p0=%c p1=%c s1=%c\n", r0, p[1 << 12], s[1 << 12]);
	printf("remove=%d\n", madvise(s, 4 << 12, MADV_REMOVE));
	printf("after: s0=%d s1=%d p0=%d p1=%c p2=%d\n", s[0], s[1 << 12], p[0], p[1 << 12], p[2 << 12]);
	return 0;
}
