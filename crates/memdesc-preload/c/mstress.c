/* mstress.c: an mstress-like workload (the pattern of mimalloc's
 * test-stress, which mimalloc-bench runs as mstress; written anew).
 *
 * THREADS threads run in rounds; each round's threads are created anew, so
 * threads keep exiting while blocks they allocated live on. A thread
 * allocates blocks of random sizes (mostly small, now and then up to
 * hundreds of KiB), keeps some in a private array, frees others at once,
 * and swaps blocks through a shared transfer array with an atomic exchange,
 * so a block is often freed by another thread, or in a later round, than the
 * one that allocated it. Each block carries its size and a pattern, checked
 * when it is freed.
 *
 * Usage: mstress [THREADS] [SCALE]. Prints totals that do not depend on the
 * interleaving; exits 1 if a block was corrupted.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRANSFERS 1000
#define ROUNDS 10

static _Atomic(uint64_t *) transfer[TRANSFERS];
static atomic_ullong allocated_bytes, allocated_blocks, freed_blocks;
static long scale = 1;

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ULL;
}

/* A block: words[0] = its word count, words[1] = a key; the rest = key + index. */
static uint64_t *block_alloc(uint64_t *s) {
    uint64_t r = rng_next(s);
    size_t words;
    if (r % 1000 == 0)
        words = 1024 + (r >> 20) % 40000; /* rarely large */
    else if (r % 100 == 0)
        words = 64 + (r >> 20) % 1000;
    else
        words = 2 + (r >> 20) % 30;
    uint64_t *b = malloc(words * sizeof(uint64_t));
    if (!b) {
        fprintf(stderr, "mstress: out of memory\n");
        exit(2);
    }
    uint64_t key = rng_next(s);
    b[0] = words;
    b[1] = key;
    /* Touch the start and end only, as test-stress does for large blocks. */
    size_t fill = words < 64 ? words : 64;
    for (size_t i = 2; i < fill; i++) b[i] = key + i;
    if (words > 64) b[words - 1] = key + words - 1;
    atomic_fetch_add_explicit(&allocated_bytes, words * sizeof(uint64_t), memory_order_relaxed);
    atomic_fetch_add_explicit(&allocated_blocks, 1, memory_order_relaxed);
    return b;
}

static void block_free(uint64_t *b) {
    if (!b) return;
    size_t words = b[0];
    uint64_t key = b[1];
    size_t fill = words < 64 ? words : 64;
    for (size_t i = 2; i < fill; i++)
        if (b[i] != key + i) {
            fprintf(stderr, "mstress: block corrupted (word %zu of %zu)\n", i, words);
            exit(1);
        }
    if (words > 64 && b[words - 1] != key + words - 1) {
        fprintf(stderr, "mstress: block corrupted (last word of %zu)\n", words);
        exit(1);
    }
    atomic_fetch_add_explicit(&freed_blocks, 1, memory_order_relaxed);
    free(b);
}

static void *stress(void *arg) {
    uint64_t s = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ULL + 1;
    size_t cap = 64, len = 0;
    uint64_t **kept = malloc(cap * sizeof *kept);
    if (!kept) exit(2);
    long steps = 120000 * scale;
    for (long i = 0; i < steps; i++) {
        uint64_t r = rng_next(&s) % 100;
        if (r < 45) {
            /* Keep a new block, growing the private array by realloc. */
            if (len == cap) {
                cap *= 2;
                uint64_t **grown = realloc(kept, cap * sizeof *kept);
                if (!grown) exit(2);
                kept = grown;
            }
            kept[len++] = block_alloc(&s);
        } else if (r < 65 && len > 0) {
            /* Free a random kept block. */
            size_t k = rng_next(&s) % len;
            block_free(kept[k]);
            kept[k] = kept[--len];
        } else if (r < 85) {
            /* Swap a block through the transfer array: the one taken out was
             * most likely allocated by another thread. */
            size_t t = rng_next(&s) % TRANSFERS;
            uint64_t *out = atomic_exchange_explicit(&transfer[t], block_alloc(&s), memory_order_acq_rel);
            block_free(out);
        } else {
            /* A short-lived block. */
            block_free(block_alloc(&s));
        }
    }
    /* Leave about half of the kept blocks to later rounds, through the transfer array. */
    for (size_t k = 0; k < len; k++) {
        if (k % 2 == 0) {
            size_t t = rng_next(&s) % TRANSFERS;
            block_free(atomic_exchange_explicit(&transfer[t], kept[k], memory_order_acq_rel));
        } else {
            block_free(kept[k]);
        }
    }
    free(kept);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    scale = argc > 2 ? atol(argv[2]) : 1;
    if (threads < 1 || threads > 64 || scale < 1) {
        fprintf(stderr, "usage: mstress [THREADS] [SCALE]\n");
        return 2;
    }
    pthread_t t[64];
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < threads; i++)
            if (pthread_create(&t[i], NULL, stress, (void *)(uintptr_t)(round * threads + i + 1))) {
                fprintf(stderr, "mstress: pthread_create failed\n");
                return 2;
            }
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    }
    for (size_t i = 0; i < TRANSFERS; i++) block_free(atomic_exchange(&transfer[i], NULL));
    unsigned long long a = allocated_blocks, f = freed_blocks;
    if (a != f) {
        fprintf(stderr, "mstress: %llu blocks allocated, %llu freed\n", a, f);
        return 1;
    }
    printf("mstress blocks %llu bytes %llu\n", a, (unsigned long long)allocated_bytes);
    return 0;
}
