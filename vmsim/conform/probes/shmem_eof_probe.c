/* The past-EOF fault of a memfd whose PMD-sized folio reaches past i_size, with
 * shmem_enabled=always (set by hand around the run; output in the comment at the end).
 * tests/test_shmem_thp.py::test_fault_past_i_size_is_sigbus_even_with_a_huge_folio_cached */
#define _GNU_SOURCE
#include <stdio.h>
#include <signal.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <unistd.h>
static sigjmp_buf jb;
static void h(int s) { siglongjmp(jb, s); }
int main(void) {
	signal(SIGBUS, h);
	int fd = memfd_create("eof", 0);
	ftruncate(fd, 3 << 20);
	char *a = mmap(0, 4 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	pwrite(fd, "z", 1, 2 << 20);
	volatile char c;
	if (!sigsetjmp(jb, 1)) { c = a[(3 << 20) + 4096]; printf("first past-EOF read ok %d\n", c); }
	else printf("first past-EOF read SIGBUS\n");
	printf("read at 2M: %c\n", a[2 << 20]);
	if (!sigsetjmp(jb, 1)) { c = a[(3 << 20) + 4096]; printf("second past-EOF read ok %d\n", c); }
	else printf("second past-EOF read SIGBUS\n");
	printf("aligned %d\n", ((unsigned long)a & ((2<<20)-1)) == 0);
	return 0;
}
/* Linux 6.18.44, root:
 * first past-EOF read SIGBUS
 * read at 2M: z
 * second past-EOF read ok 0
 * aligned 1
 */
