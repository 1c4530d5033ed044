/* TLB shootdowns of a multi-threaded munmap loop on this machine: thread B on CPU 1
 * either keeps running in the mm (busy: it reads the region in a loop) or sleeps (its
 * CPU goes idle, lazy TLB); thread A on CPU 0 does `n` x (mmap one page, write it,
 * munmap). Prints the TLB shootdown IPIs each CPU received (/proc/interrupts "TLB"
 * line) during the loop. Usage: native_shootdown N busy|idle */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile int stop, ready;
static volatile unsigned char *region;
static int busy;

static void pin(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	sched_setaffinity(0, sizeof(s), &s);
}

static void tlb_line(long *c0, long *c1)
{
	char line[512];
	FILE *f = fopen("/proc/interrupts", "r");
	*c0 = *c1 = -1;
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "TLB shootdowns"))
			sscanf(line, " TLB: %ld %ld", c0, c1);
	if (f)
		fclose(f);
}

static void *reader(void *arg)
{
	unsigned sum = 0;
	pin(1);
	for (int i = 0; i < 16; i++)
		sum += region[i * 4096];
	ready = 1;
	while (!stop) {
		if (busy) {
			for (int i = 0; i < 16; i++)
				sum += region[i * 4096];
		} else {
			usleep(1000);
		}
	}
	return (void *)(long)sum;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 10000;
	busy = argc > 2 && !strcmp(argv[2], "busy");
	pthread_t t;
	long a0, a1, b0, b1;
	pin(0);
	region = mmap(0, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < 16; i++)
		region[i * 4096] = 1;
	pthread_attr_t attr;
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(1, &one);
	pthread_attr_init(&attr);
	pthread_attr_setaffinity_np(&attr, sizeof(one), &one);
	pthread_create(&t, &attr, reader, 0);
	while (!ready)
		usleep(100);
	usleep(20000);
	tlb_line(&a0, &a1);
	for (long i = 0; i < n; i++) {
		volatile char *p = mmap(0, 4096, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		p[0] = 1;
		munmap((void *)p, 4096);
	}
	tlb_line(&b0, &b1);
	stop = 1;
	pthread_join(t, 0);
	printf("%ld %ld\n", b0 - a0, b1 - a1);
	return 0;
}
