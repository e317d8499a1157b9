/* pairs.c: N malloc(64) + free pairs, for instruction counts per pair.
 *
 * The calls go through volatile function pointers, so the compiler cannot
 * elide the pair (GCC removes a malloc whose block is freed unused). Count
 * two sizes and divide the difference by the extra pairs, which removes
 * start-up and exit:
 *
 *   cc -O2 pairs.c -o pairs
 *   LD_PRELOAD=$LIB valgrind --tool=callgrind ./pairs 100000
 *   LD_PRELOAD=$LIB valgrind --tool=callgrind ./pairs 300000
 *
 * Usage: pairs [N]. Prints a checksum.
 */
#include <stdio.h>
#include <stdlib.h>

static void *(*volatile allocate)(size_t) = malloc;
static void (*volatile release)(void *) = free;

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    unsigned long sum = 0;
    for (long i = 0; i < n; i++) {
        unsigned char *p = allocate(64);
        if (!p) return 2;
        p[0] = (unsigned char)i;
        sum += p[0];
        release(p);
    }
    printf("pairs %lu\n", sum);
    return 0;
}
