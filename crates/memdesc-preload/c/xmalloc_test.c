/* xmalloc_test.c: an xmalloc-test-like workload (the pattern of Lever and
 * Boreham's xmalloc-test, which mimalloc-bench runs with --procs=N;
 * written anew).
 *
 * THREADS threads in producer/consumer pairs: a producer allocates batches
 * of small blocks (16 to 256 bytes) and hands each batch to its consumer
 * through a bounded queue; the consumer checks and frees every block. Every
 * free is a remote free, of a block allocated on another thread, the case
 * that separates allocators most in mimalloc's published results.
 *
 * Usage: xmalloc_test [THREADS] [SCALE] [BATCHES]. THREADS is rounded up to
 * an even number; BATCHES (of 256 blocks, over all pairs) overrides
 * 24000 x SCALE, for shorter runs under callgrind. Prints totals that do not depend on the interleaving; exits 1 if
 * a block was corrupted.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 256
#define QUEUE_CAP 16

struct batch {
    size_t len;
    uint64_t *blocks[BATCH];
};

struct pair {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct batch *queue[QUEUE_CAP];
    size_t head, len;
    int done;
    uint64_t seed;
    long batches;
    uint64_t produced_bytes, consumed_bytes, consumed_blocks;
};

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ULL;
}

static void *producer(void *arg) {
    struct pair *p = arg;
    uint64_t s = p->seed;
    for (long n = 0; n < p->batches; n++) {
        struct batch *b = malloc(sizeof *b);
        if (!b) exit(2);
        b->len = BATCH;
        for (size_t i = 0; i < BATCH; i++) {
            size_t size = 16 + (rng_next(&s) >> 40) % 241;
            uint64_t *blk = malloc(size);
            if (!blk) exit(2);
            /* The first word: the size; the last byte: a check byte. */
            blk[0] = size;
            ((unsigned char *)blk)[size - 1] = (unsigned char)(size * 31);
            p->produced_bytes += size;
            b->blocks[i] = blk;
        }
        pthread_mutex_lock(&p->lock);
        while (p->len == QUEUE_CAP) pthread_cond_wait(&p->changed, &p->lock);
        p->queue[(p->head + p->len) % QUEUE_CAP] = b;
        p->len++;
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_lock(&p->lock);
    p->done = 1;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void *consumer(void *arg) {
    struct pair *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (p->len == 0 && !p->done) pthread_cond_wait(&p->changed, &p->lock);
        if (p->len == 0) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        struct batch *b = p->queue[p->head];
        p->head = (p->head + 1) % QUEUE_CAP;
        p->len--;
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->lock);
        for (size_t i = 0; i < b->len; i++) {
            uint64_t *blk = b->blocks[i];
            size_t size = blk[0];
            if (size < 16 || size > 256 || ((unsigned char *)blk)[size - 1] != (unsigned char)(size * 31)) {
                fprintf(stderr, "xmalloc-test: block corrupted\n");
                exit(1);
            }
            p->consumed_bytes += size;
            p->consumed_blocks++;
            free(blk);
        }
        free(b);
    }
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    long scale = argc > 2 ? atol(argv[2]) : 1;
    long batches = argc > 3 ? atol(argv[3]) : 24000 * scale;
    if (threads < 1 || threads > 64 || scale < 1 || batches < 1) {
        fprintf(stderr, "usage: xmalloc_test [THREADS] [SCALE] [BATCHES]\n");
        return 2;
    }
    int pairs = (threads + 1) / 2;
    struct pair *p = calloc((size_t)pairs, sizeof *p);
    pthread_t *t = calloc((size_t)pairs * 2, sizeof *t);
    if (!p || !t) return 2;
    for (int i = 0; i < pairs; i++) {
        pthread_mutex_init(&p[i].lock, NULL);
        pthread_cond_init(&p[i].changed, NULL);
        p[i].seed = 0x2545f4914f6cdd1dULL + (uint64_t)i;
        p[i].batches = batches / pairs;
        if (pthread_create(&t[2 * i], NULL, producer, &p[i]) || pthread_create(&t[2 * i + 1], NULL, consumer, &p[i])) {
            fprintf(stderr, "xmalloc-test: pthread_create failed\n");
            return 2;
        }
    }
    uint64_t bytes = 0, blocks = 0;
    for (int i = 0; i < pairs; i++) {
        pthread_join(t[2 * i], NULL);
        pthread_join(t[2 * i + 1], NULL);
        if (p[i].produced_bytes != p[i].consumed_bytes) {
            fprintf(stderr, "xmalloc-test: pair %d lost blocks\n", i);
            return 1;
        }
        bytes += p[i].consumed_bytes;
        blocks += p[i].consumed_blocks;
    }
    free(p);
    free(t);
    printf("xmalloc-test blocks %llu bytes %llu\n", (unsigned long long)blocks, (unsigned long long)bytes);
    return 0;
}
