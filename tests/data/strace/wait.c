#define _GNU_SOURCE
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
	int st;
	pid_t c = syscall(SYS_fork);
	if (c == 0) { usleep(100000); syscall(SYS_exit_group, 3); }
	syscall(SYS_wait4, c, &st, WNOHANG, NULL);
	syscall(SYS_wait4, c, &st, 0, NULL);
	syscall(SYS_brk, (void *)0);
	return 0;
}
