/* minimal static program for docs/linux-layout.md: its maps are read from outside */
#include <unistd.h>
int main(void) { pause(); return 0; }
