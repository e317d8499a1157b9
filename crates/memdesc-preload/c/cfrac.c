/* cfrac.c: a cfrac-like workload (mimalloc-bench's cfrac pattern, written anew).
 *
 * cfrac factors integers by the continued fraction method on a small bignum
 * library whose every operation returns a freshly allocated number: a storm
 * of small, short-lived allocations (tens to a few hundred bytes) with a few
 * kept in tables. Here: the continued fraction of sqrt(N) for many N, with
 * the convergents p/q as heap bignums; each step checks the identity
 * p_k^2 - N q_k^2 = (-1)^(k+1) Q_(k+1) in bignum arithmetic, and keeps the
 * Q that are smooth over a small factor base in a hash table of allocated
 * relations, as cfrac collects relations.
 *
 * Usage: cfrac [SCALE]. Prints a checksum; exits 1 if an identity fails.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An immutable bignum: little-endian 32-bit limbs, no leading zero limb. */
typedef struct {
    uint32_t len;
    uint32_t d[];
} big;

static big *big_alloc(uint32_t len) {
    big *b = malloc(sizeof(big) + sizeof(uint32_t) * (len ? len : 1));
    if (!b) {
        fprintf(stderr, "cfrac: out of memory\n");
        exit(2);
    }
    b->len = len;
    return b;
}

static big *big_trim(big *b) {
    while (b->len && b->d[b->len - 1] == 0) b->len--;
    return b;
}

static big *big_from(uint64_t v) {
    big *b = big_alloc(2);
    b->d[0] = (uint32_t)v;
    b->d[1] = (uint32_t)(v >> 32);
    return big_trim(b);
}

static int big_cmp(const big *a, const big *b) {
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    for (uint32_t i = a->len; i-- > 0;)
        if (a->d[i] != b->d[i]) return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}

static big *big_add(const big *a, const big *b) {
    if (a->len < b->len) {
        const big *t = a;
        a = b;
        b = t;
    }
    big *r = big_alloc(a->len + 1);
    uint64_t carry = 0;
    for (uint32_t i = 0; i < a->len; i++) {
        carry += (uint64_t)a->d[i] + (i < b->len ? b->d[i] : 0);
        r->d[i] = (uint32_t)carry;
        carry >>= 32;
    }
    r->d[a->len] = (uint32_t)carry;
    return big_trim(r);
}

/* a - b, for a >= b. */
static big *big_sub(const big *a, const big *b) {
    big *r = big_alloc(a->len);
    int64_t borrow = 0;
    for (uint32_t i = 0; i < a->len; i++) {
        int64_t v = (int64_t)a->d[i] - (i < b->len ? b->d[i] : 0) - borrow;
        borrow = v < 0;
        r->d[i] = (uint32_t)(v + (borrow ? ((int64_t)1 << 32) : 0));
    }
    return big_trim(r);
}

static big *big_mul(const big *a, const big *b) {
    big *r = big_alloc(a->len + b->len);
    memset(r->d, 0, sizeof(uint32_t) * r->len);
    for (uint32_t i = 0; i < a->len; i++) {
        uint64_t carry = 0;
        for (uint32_t j = 0; j < b->len; j++) {
            carry += (uint64_t)a->d[i] * b->d[j] + r->d[i + j];
            r->d[i + j] = (uint32_t)carry;
            carry >>= 32;
        }
        r->d[i + b->len] = (uint32_t)carry;
    }
    return big_trim(r);
}

static big *big_mul_small(const big *a, uint64_t m) {
    big *s = big_from(m);
    big *r = big_mul(a, s);
    free(s);
    return r;
}

static uint64_t big_hash(const big *a) {
    uint64_t h = 1469598103934665603ULL;
    for (uint32_t i = 0; i < a->len; i++) h = (h ^ a->d[i]) * 1099511628211ULL;
    return h;
}

static uint64_t isqrt(uint64_t n) {
    uint64_t x = 0;
    for (int bit = 31; bit >= 0; bit--) {
        uint64_t y = x | ((uint64_t)1 << bit);
        if (y * y <= n) x = y;
    }
    return x;
}

/* A relation: a smooth Q with the convergent that produced it. */
struct relation {
    struct relation *next;
    uint64_t q;
    big *p;
    uint32_t exponents[];
};

#define PRIMES 24
static const uint32_t primes[PRIMES] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37,
                                        41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89};
#define BUCKETS 64

static uint64_t expand(uint64_t n, int steps, uint64_t *relations) {
    uint64_t a0 = isqrt(n);
    if (a0 * a0 == n) return 0;
    big *N = big_from(n);
    uint64_t m = 0, d = 1, a = a0;
    big *p_prev = big_from(1), *q_prev = big_from(0);
    big *p = big_from(a0), *q = big_from(1);
    struct relation *table[BUCKETS] = {0};
    uint64_t sum = 0;
    for (int k = 0; k < steps; k++) {
        /* The next partial quotient, in 64-bit: m, d < 2 sqrt(N). */
        m = d * a - m;
        d = (n - m * m) / d;
        a = (a0 + m) / d;
        /* Check p_k^2 - N q_k^2 = (-1)^(k+1) d_(k+1). */
        big *pp = big_mul(p, p);
        big *qq = big_mul(q, q);
        big *nqq = big_mul(N, qq);
        big *dd = big_from(d);
        int ok;
        if (k % 2 == 1) {
            big *diff = big_sub(pp, nqq);
            ok = big_cmp(pp, nqq) > 0 && big_cmp(diff, dd) == 0;
            free(diff);
        } else {
            big *diff = big_cmp(nqq, pp) > 0 ? big_sub(nqq, pp) : big_from(0);
            ok = big_cmp(diff, dd) == 0;
            free(diff);
        }
        if (!ok) {
            fprintf(stderr, "cfrac: identity failed for N=%llu at step %d\n", (unsigned long long)n, k);
            exit(1);
        }
        /* A smooth d becomes a relation (its exponent vector, the convergent kept). */
        uint64_t rest = d;
        uint32_t exps[PRIMES] = {0};
        for (int i = 0; i < PRIMES; i++)
            while (rest % primes[i] == 0) {
                rest /= primes[i];
                exps[i]++;
            }
        if (rest == 1) {
            struct relation *r = malloc(sizeof *r + sizeof exps);
            if (!r) exit(2);
            memcpy(r->exponents, exps, sizeof exps);
            r->q = d;
            r->p = big_add(p, dd);
            size_t b = d % BUCKETS;
            r->next = table[b];
            table[b] = r;
            (*relations)++;
        }
        sum ^= big_hash(pp) + d;
        free(pp);
        free(qq);
        free(nqq);
        free(dd);
        /* The next convergent: p_(k+1) = a p_k + p_(k-1), the same for q. */
        big *ap = big_mul_small(p, a), *aq = big_mul_small(q, a);
        big *np = big_add(ap, p_prev), *nq = big_add(aq, q_prev);
        free(ap);
        free(aq);
        free(p_prev);
        free(q_prev);
        p_prev = p;
        q_prev = q;
        p = np;
        q = nq;
    }
    for (int b = 0; b < BUCKETS; b++)
        while (table[b]) {
            struct relation *r = table[b];
            table[b] = r->next;
            sum += big_hash(r->p) ^ r->q;
            free(r->p);
            free(r);
        }
    free(N);
    free(p_prev);
    free(q_prev);
    free(p);
    free(q);
    return sum;
}

int main(int argc, char **argv) {
    long scale = argc > 1 ? atol(argv[1]) : 1;
    if (scale < 1) scale = 1;
    uint64_t sum = 0, relations = 0;
    /* Numbers near 2^61 (so m, d and a fit in 64 bits), 60 steps each: the
     * convergents grow to about 30 limbs, the size of cfrac's numbers. */
    uint64_t n = ((uint64_t)1 << 61) + 12345;
    for (long i = 0; i < 15000 * scale; i++) {
        sum += expand(n, 60 + (int)(i % 40), &relations);
        n += 2 * (uint64_t)i + 1;
    }
    printf("cfrac %llx relations %llu\n", (unsigned long long)sum, (unsigned long long)relations);
    return 0;
}
