/* threads.c: a threaded stress test of a preloaded malloc.
 *
 * Checks, each with its content verified:
 *  - producer/consumer pairs: blocks allocated on one thread, freed on another;
 *  - threads created and exiting in waves (their caches must come back);
 *  - calloc zeroing, realloc growth and shrinking, memalign, posix_memalign,
 *    aligned_alloc, valloc, pvalloc, reallocarray and malloc_usable_size,
 *    and ENOMEM on a size overflow;
 *  - fork() while other threads allocate: the child allocates, frees and
 *    exits 0.
 * Prints a checksum that depends only on the work done (never on addresses),
 * so runs under different allocators print the same line. Exits non-zero on
 * the first failed check, saying which.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "threads: " __VA_ARGS__);                                                  \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)

static uint64_t rng_next(uint64_t *s) {
    /* xorshift64*: deterministic per thread. */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ULL;
}

/* A block carries its size and a stamp in its first words and a byte
 * pattern after them, so the consumer can check nothing else wrote it. */
struct block {
    size_t size;
    uint64_t stamp;
    unsigned char bytes[];
};

static struct block *block_new(size_t size, uint64_t stamp) {
    if (size < sizeof(struct block)) size = sizeof(struct block);
    struct block *b = malloc(size);
    if (!b) FAIL("malloc(%zu) failed", size);
    b->size = size;
    b->stamp = stamp;
    memset(b->bytes, (int)(stamp & 0xff), size - sizeof(struct block));
    return b;
}

static uint64_t block_check_free(struct block *b) {
    size_t n = b->size - sizeof(struct block);
    unsigned char want = (unsigned char)(b->stamp & 0xff);
    for (size_t i = 0; i < n; i++)
        if (b->bytes[i] != want) FAIL("block %llu corrupted at byte %zu", (unsigned long long)b->stamp, i);
    uint64_t sum = b->stamp ^ b->size;
    free(b);
    return sum;
}

/* ---- producer/consumer: a bounded queue of blocks ---- */

#define QUEUE_CAP 256
struct queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    struct block *items[QUEUE_CAP];
    size_t head, len;
    int closed;
};

static void queue_init(struct queue *q) {
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
}

static void queue_push(struct queue *q, struct block *b) {
    pthread_mutex_lock(&q->lock);
    while (q->len == QUEUE_CAP) pthread_cond_wait(&q->not_full, &q->lock);
    q->items[(q->head + q->len) % QUEUE_CAP] = b;
    q->len++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}

static struct block *queue_pop(struct queue *q) {
    pthread_mutex_lock(&q->lock);
    while (q->len == 0 && !q->closed) pthread_cond_wait(&q->not_empty, &q->lock);
    struct block *b = NULL;
    if (q->len > 0) {
        b = q->items[q->head];
        q->head = (q->head + 1) % QUEUE_CAP;
        q->len--;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->lock);
    return b;
}

static void queue_close(struct queue *q) {
    pthread_mutex_lock(&q->lock);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}

struct pc_args {
    struct queue *q;
    uint64_t seed;
    long count;
    uint64_t sum;
};

static void *producer(void *p) {
    struct pc_args *a = p;
    uint64_t s = a->seed;
    for (long i = 0; i < a->count; i++) {
        uint64_t r = rng_next(&s);
        /* Mostly small, sometimes a page or more. */
        size_t size = (r % 16 == 0) ? 4096 + r % 60000 : 16 + r % 496;
        uint64_t stamp = (a->seed << 32) | (uint64_t)i;
        a->sum += stamp ^ (size < sizeof(struct block) ? sizeof(struct block) : size);
        queue_push(a->q, block_new(size, stamp));
    }
    return NULL;
}

static void *consumer(void *p) {
    struct pc_args *a = p;
    struct block *b;
    while ((b = queue_pop(a->q)) != NULL) a->sum += block_check_free(b);
    return NULL;
}

static uint64_t producer_consumer(int pairs, long count) {
    struct queue q;
    queue_init(&q);
    pthread_t prod[8], cons[8];
    struct pc_args pa[8], ca[8];
    for (int i = 0; i < pairs; i++) {
        pa[i] = (struct pc_args){&q, 0x1234567ULL + (uint64_t)i, count, 0};
        ca[i] = (struct pc_args){&q, 0, 0, 0};
        if (pthread_create(&prod[i], NULL, producer, &pa[i])) FAIL("pthread_create");
        if (pthread_create(&cons[i], NULL, consumer, &ca[i])) FAIL("pthread_create");
    }
    for (int i = 0; i < pairs; i++) pthread_join(prod[i], NULL);
    queue_close(&q);
    uint64_t produced = 0, consumed = 0;
    for (int i = 0; i < pairs; i++) {
        pthread_join(cons[i], NULL);
        produced += pa[i].sum;
        consumed += ca[i].sum;
    }
    if (produced != consumed) FAIL("producer/consumer sums differ: %llx != %llx", (unsigned long long)produced,
                                   (unsigned long long)consumed);
    return produced;
}

/* ---- waves: many short-lived threads, each leaving some blocks to the next wave ---- */

#define WAVE_THREADS 8
#define KEEP 64
static struct block *left[WAVE_THREADS][KEEP];

struct wave_args {
    int slot;
    int wave;
    uint64_t sum;
};

static void *wave_thread(void *p) {
    struct wave_args *a = p;
    uint64_t s = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)a->wave << 8) ^ (uint64_t)a->slot;
    /* Free what the previous wave's thread in this slot left: a free of a block whose
     * owner thread has exited. */
    for (int i = 0; i < KEEP; i++)
        if (left[a->slot][i]) {
            a->sum += block_check_free(left[a->slot][i]);
            left[a->slot][i] = NULL;
        }
    struct block *mine[512];
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < 512; i++) {
            size_t size = 16 + rng_next(&s) % 1000;
            mine[i] = block_new(size, ((uint64_t)a->wave << 40) | ((uint64_t)a->slot << 20) | (uint64_t)(round * 512 + i));
        }
        for (int i = 0; i < 512; i++) a->sum += block_check_free(mine[i]);
    }
    for (int i = 0; i < KEEP; i++)
        left[a->slot][i] = block_new(32 + rng_next(&s) % 200, ((uint64_t)a->wave << 40) | 0xfffff000u | (uint64_t)i);
    return NULL;
}

static uint64_t waves(int count) {
    uint64_t sum = 0;
    for (int w = 0; w < count; w++) {
        pthread_t t[WAVE_THREADS];
        struct wave_args a[WAVE_THREADS];
        for (int i = 0; i < WAVE_THREADS; i++) {
            a[i] = (struct wave_args){i, w, 0};
            if (pthread_create(&t[i], NULL, wave_thread, &a[i])) FAIL("pthread_create");
        }
        for (int i = 0; i < WAVE_THREADS; i++) {
            pthread_join(t[i], NULL);
            sum += a[i].sum;
        }
    }
    for (int i = 0; i < WAVE_THREADS; i++)
        for (int k = 0; k < KEEP; k++)
            if (left[i][k]) {
                sum += block_check_free(left[i][k]);
                left[i][k] = NULL;
            }
    return sum;
}

/* ---- the API surface ---- */

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 7);
}

static void expect_fill(const unsigned char *p, size_t n, unsigned seed, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7)) FAIL("%s: byte %zu lost", what, i);
}

static uint64_t api_checks(void) {
    uint64_t sum = 0;
    static const size_t sizes[] = {0, 1, 7, 8, 15, 16, 17, 24, 31, 48, 64, 100, 128, 255, 256, 500, 512, 1000, 1024,
                                   2000, 4000, 4096, 5000, 8192, 16384, 40000, 65536, 100000, 262144, 1 << 20,
                                   3 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        unsigned char *p = malloc(n);
        if (!p && n) FAIL("malloc(%zu) = NULL", n);
        if (p) {
            size_t usable = malloc_usable_size(p);
            if (usable < n) FAIL("malloc_usable_size(malloc(%zu)) = %zu", n, usable);
            if ((uintptr_t)p % 16 && n >= 16) FAIL("malloc(%zu) not 16-aligned", n);
            fill(p, usable, (unsigned)k); /* the whole usable size is ours to write */
            expect_fill(p, usable, (unsigned)k, "malloc");
        }
        free(p);

        unsigned char *c = calloc(n ? n : 1, 1);
        if (!c) FAIL("calloc(%zu) = NULL", n);
        for (size_t i = 0; i < n; i++)
            if (c[i]) FAIL("calloc(%zu): byte %zu not zero", n, i);
        free(c);
        /* Reuse after a dirty free must still come back zeroed. */
        unsigned char *d = malloc(n + 1);
        memset(d, 0xa5, n + 1);
        free(d);
        c = calloc(1, n + 1);
        for (size_t i = 0; i <= n; i++)
            if (c[i]) FAIL("calloc(%zu) after a dirty free: byte %zu not zero", n + 1, i);
        free(c);
        sum += n;
    }
    volatile size_t huge = SIZE_MAX / 2; /* volatile: no compile-time overflow warning */
    errno = 0;
    if (calloc(huge, 4) != NULL) FAIL("calloc overflow not detected");
    if (errno != ENOMEM) FAIL("calloc overflow: errno %d, not ENOMEM", errno);

    /* realloc: grow through every size class and shrink back, content kept. */
    unsigned char *r = realloc(NULL, 10);
    if (!r) FAIL("realloc(NULL, 10) = NULL");
    fill(r, 10, 3);
    size_t have = 10;
    for (size_t n = 11; n < (2u << 20); n = n * 3 / 2 + 1) {
        r = realloc(r, n);
        if (!r) FAIL("realloc to %zu = NULL", n);
        expect_fill(r, have, 3, "realloc growth");
        fill(r, n, 3);
        have = n;
        sum += n;
    }
    for (size_t n = have; n > 8; n /= 3) {
        r = realloc(r, n);
        if (!r) FAIL("realloc shrink to %zu = NULL", n);
        expect_fill(r, n, 3, "realloc shrink");
        have = n;
    }
    free(r);

    /* Aligned allocation, every power of two from 8 to 64 KiB. */
    for (size_t align = 8; align <= 65536; align *= 2) {
        for (size_t n = 1; n <= 3 * align + 100; n = n * 2 + 13) {
            void *m = memalign(align, n);
            if (!m || (uintptr_t)m % align) FAIL("memalign(%zu, %zu) = %p", align, n, m);
            if (malloc_usable_size(m) < n) FAIL("memalign: usable size below %zu", n);
            fill(m, n, (unsigned)align);
            void *pm = NULL;
            int rc = posix_memalign(&pm, align, n);
            if (rc || !pm || (uintptr_t)pm % align) FAIL("posix_memalign(%zu, %zu) = %d", align, n, rc);
            fill(pm, n, (unsigned)n);
            size_t an = (n + align - 1) / align * align; /* C11: a multiple of align */
            void *aa = aligned_alloc(align, an);
            if (!aa || (uintptr_t)aa % align) FAIL("aligned_alloc(%zu, %zu) = %p", align, an, aa);
            fill(aa, an, 9);
            expect_fill(m, n, (unsigned)align, "memalign");
            expect_fill(pm, n, (unsigned)n, "posix_memalign");
            expect_fill(aa, an, 9, "aligned_alloc");
            /* An aligned block can be reallocated and keeps its content. */
            pm = realloc(pm, n + 5000);
            if (!pm) FAIL("realloc of an aligned block");
            expect_fill(pm, n, (unsigned)n, "realloc of posix_memalign");
            free(m);
            free(pm);
            free(aa);
            sum += align ^ n;
        }
    }
    /* Page-aligned calls, and the libc calls that allocate through malloc. */
    long page = sysconf(_SC_PAGESIZE);
    for (size_t n = 1; n < 3 * (size_t)page; n = n * 3 + 1) {
        void *v = valloc(n);
        if (!v || (uintptr_t)v % (uintptr_t)page) FAIL("valloc(%zu) = %p", n, v);
        fill(v, n, 5);
        void *pv = pvalloc(n);
        if (!pv || (uintptr_t)pv % (uintptr_t)page) FAIL("pvalloc(%zu) = %p", n, pv);
        size_t rounded = (n + (size_t)page - 1) / (size_t)page * (size_t)page;
        if (malloc_usable_size(pv) < rounded) FAIL("pvalloc(%zu): usable size below %zu", n, rounded);
        fill(pv, rounded, 6);
        expect_fill(v, n, 5, "valloc");
        free(v);
        free(pv);
    }
    unsigned char *ra = reallocarray(NULL, 100, 8);
    if (!ra) FAIL("reallocarray(NULL, 100, 8) = NULL");
    fill(ra, 800, 2);
    ra = reallocarray(ra, 1000, 8);
    if (!ra) FAIL("reallocarray growth = NULL");
    expect_fill(ra, 800, 2, "reallocarray");
    errno = 0;
    if (reallocarray(ra, huge, 4) != NULL || errno != ENOMEM) FAIL("reallocarray overflow not ENOMEM");
    free(ra);
    char *dup = strdup("a string copied by libc through malloc");
    if (!dup || strcmp(dup, "a string copied by libc through malloc")) FAIL("strdup");
    free(dup);

    void *bad = NULL;
    if (posix_memalign(&bad, 24, 100) != EINVAL) FAIL("posix_memalign(24) not EINVAL");
    free(NULL);
    return sum;
}

/* ---- fork while other threads allocate ---- */

static volatile int stop_churn;

static void *churn(void *p) {
    uint64_t s = (uint64_t)(uintptr_t)p | 1;
    struct block *held[64] = {0};
    long n = 0;
    while (!stop_churn) {
        int i = (int)(rng_next(&s) % 64);
        if (held[i]) block_check_free(held[i]);
        held[i] = block_new(16 + rng_next(&s) % 2000, (uint64_t)n++);
    }
    for (int i = 0; i < 64; i++)
        if (held[i]) block_check_free(held[i]);
    return NULL;
}

static int fork_checks(int forks) {
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1))) FAIL("pthread_create");
    for (int f = 0; f < forks; f++) {
        pid_t pid = fork();
        if (pid < 0) FAIL("fork");
        if (pid == 0) {
            /* The child: only this thread exists; allocate, free, and spawn a thread. */
            uint64_t sum = 0;
            for (int round = 0; round < 50; round++) {
                struct block *b[100];
                for (int i = 0; i < 100; i++) b[i] = block_new(16 + (size_t)(i * 37 % 3000), (uint64_t)i);
                for (int i = 0; i < 100; i++) sum += block_check_free(b[i]);
            }
            pthread_t ct;
            struct wave_args a = {0, 1000 + f, 0};
            if (pthread_create(&ct, NULL, wave_thread, &a)) _exit(3);
            pthread_join(ct, NULL);
            _exit(sum ? 0 : 2);
        }
        int status = 0;
        if (waitpid(pid, &status, 0) != pid) FAIL("waitpid");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) FAIL("fork child %d: status %#x", f, status);
    }
    stop_churn = 1;
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    return forks;
}

int main(int argc, char **argv) {
    long scale = argc > 1 ? atol(argv[1]) : 1;
    if (scale < 1) scale = 1;
    uint64_t api = api_checks();
    uint64_t pc = producer_consumer(2, 50000 * scale);
    uint64_t wv = waves((int)(10 * scale));
    int forks = fork_checks((int)(5 * scale));
    printf("api %llx producer-consumer %llx waves %llx forks %d\n", (unsigned long long)api, (unsigned long long)pc,
           (unsigned long long)wv, forks);
    return 0;
}
