/* mremap(X, 3p, 3p, MREMAP_MAYMOVE|MREMAP_FIXED|MREMAP_DONTUNMAP, X + 3p) of the last three
 * pages of a 7-page private anonymous VMA, to the pages right after it, for each
 * protection, untouched and touched. Output: mremap_dontunmap_adjacent-6.18.txt. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>
#include <errno.h>
#include <string.h>
#define P 4096UL
int main(void) {
    for (int prot = 0; prot < 4; prot++) for (int touch = 0; touch < 2; touch++) {
    char *arena = mmap(NULL, 32 * P, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(arena, 32 * P);
    char *V = arena + 8 * P;
    mmap(V, 7 * P, PROT_READ|PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (touch) memset(V, 1, 7 * P);
    mprotect(V, 7 * P, prot);
    char *X = V + 4 * P;
    void *r = mremap(X, 3 * P, 3 * P, 7, X + 3 * P);
    printf("prot %d touch %d: %s\n", prot, touch, r == MAP_FAILED ? strerror(errno) : (r == X + 3 * P ? "moved" : "other"));
    munmap(arena, 32 * P);
    }
}
