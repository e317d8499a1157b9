/* glibc_simple.c: a glibc-simple-like workload (the pattern of glibc's
 * benchtests/bench-malloc-simple.c, which mimalloc-bench runs as
 * glibc-simple; written anew).
 *
 * One thread, tight loops: allocate COUNT blocks of one fixed size, touch
 * each, free them all in allocation order; for counts 25, 100, 400 and 1600
 * and sizes 16 to 512 bytes. It measures the fast paths alone: nothing
 * outlives its loop.
 *
 * Usage: glibc_simple [SCALE]. Prints a checksum.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static const size_t counts[] = {25, 100, 400, 1600};
static const size_t sizes[] = {16, 32, 48, 64, 96, 128, 256, 512};

int main(int argc, char **argv) {
    long scale = argc > 1 ? atol(argv[1]) : 1;
    if (scale < 1) scale = 1;
    static unsigned char *blocks[1600];
    uint64_t sum = 0;
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t count = counts[c], size = sizes[s];
            /* The same number of allocations for every count. */
            long rounds = 1000000 * scale / (long)count;
            for (long r = 0; r < rounds; r++) {
                for (size_t i = 0; i < count; i++) {
                    unsigned char *p = malloc(size);
                    if (!p) {
                        fprintf(stderr, "glibc_simple: out of memory\n");
                        return 2;
                    }
                    p[0] = (unsigned char)i;
                    p[size - 1] = (unsigned char)r;
                    blocks[i] = p;
                }
                for (size_t i = 0; i < count; i++) {
                    sum += blocks[i][0] + blocks[i][size - 1];
                    free(blocks[i]);
                }
            }
        }
    printf("glibc-simple %llx\n", (unsigned long long)sum);
    return 0;
}
