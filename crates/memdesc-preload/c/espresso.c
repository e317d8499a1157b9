/* espresso.c: an espresso-like workload (mimalloc-bench's espresso pattern,
 * written anew).
 *
 * espresso minimises boolean functions held as covers: sets of cubes, each a
 * bit vector with two bits per input variable. Its allocation pattern is
 * many mid-size arrays (one per cube and per temporary set), covers that
 * grow by realloc, sorts of cube pointers, and whole covers freed at once.
 * Here: random covers over VARS variables are repeatedly expanded (a cube's
 * literal dropped when the grown cube meets no cube of the off-set),
 * intersected pairwise into consensus covers, sorted, and made irredundant
 * (cubes contained in another dropped), round after round.
 *
 * Usage: espresso [SCALE]. Prints a checksum.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VARS 128
#define WORDS (2 * VARS / 64) /* two bits per variable: 01 = 0, 10 = 1, 11 = don't care */

typedef uint64_t cube; /* a cube is a malloc'd array of WORDS words */

typedef struct {
    cube **cubes;
    size_t len, cap;
} cover;

static uint64_t rng = 88172645463325252ULL;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "espresso: out of memory\n");
        exit(2);
    }
    return p;
}

static cube *cube_new(void) { return xmalloc(WORDS * sizeof(uint64_t)); }

static cube *cube_dup(const cube *c) {
    cube *d = cube_new();
    memcpy(d, c, WORDS * sizeof(uint64_t));
    return d;
}

static void cover_push(cover *f, cube *c) {
    if (f->len == f->cap) {
        /* Grow by realloc, as espresso's sf_addset does. */
        f->cap = f->cap ? f->cap + f->cap / 2 + 1 : 4;
        cube **grown = realloc(f->cubes, f->cap * sizeof(cube *));
        if (!grown) exit(2);
        f->cubes = grown;
    }
    f->cubes[f->len++] = c;
}

static void cover_free(cover *f) {
    for (size_t i = 0; i < f->len; i++) free(f->cubes[i]);
    free(f->cubes);
    f->cubes = NULL;
    f->len = f->cap = 0;
}

/* A random cube with about `density` of its variables bound. */
static cube *cube_random(int density) {
    cube *c = cube_new();
    for (int w = 0; w < WORDS; w++) {
        uint64_t v = 0;
        for (int k = 0; k < 32; k++) {
            uint64_t lit = (int)(next() % 100) < density ? ((next() & 1) ? 1 : 2) : 3;
            v |= lit << (2 * k);
        }
        c[w] = v;
    }
    return c;
}

static const uint64_t LOW = 0x5555555555555555ULL;

/* Whether a AND b is a non-empty cube: no variable whose two bits are 00. */
static int cubes_meet(const cube *a, const cube *b) {
    for (int w = 0; w < WORDS; w++) {
        uint64_t x = a[w] & b[w];
        if (~(x | (x >> 1)) & LOW) return 0;
    }
    return 1;
}

static int cube_contains(const cube *a, const cube *b) {
    for (int w = 0; w < WORDS; w++)
        if ((a[w] & b[w]) != b[w]) return 0;
    return 1;
}

static int bound_literals(const cube *c) {
    int n = 0;
    for (int w = 0; w < WORDS; w++) {
        uint64_t x = c[w];
        n += __builtin_popcountll(~(x & (x >> 1)) & LOW);
    }
    return n;
}

static int cmp_cubes(const void *pa, const void *pb) {
    const cube *a = *(cube *const *)pa, *b = *(cube *const *)pb;
    int la = bound_literals(a), lb = bound_literals(b);
    if (la != lb) return la - lb; /* largest cubes first */
    return memcmp(a, b, WORDS * sizeof(uint64_t));
}

/* Expand: raise each literal of each cube unless the grown cube meets the off-set. */
static void expand(cover *on, const cover *off) {
    for (size_t i = 0; i < on->len; i++) {
        cube *c = on->cubes[i];
        cube *trial = cube_dup(c);
        for (int v = 0; v < VARS; v++) {
            int w = v / 32, s = 2 * (v % 32);
            if (((trial[w] >> s) & 3) == 3) continue;
            uint64_t saved = trial[w];
            trial[w] |= (uint64_t)3 << s;
            for (size_t j = 0; j < off->len; j++)
                if (cubes_meet(trial, off->cubes[j])) {
                    trial[w] = saved;
                    break;
                }
        }
        free(c);
        on->cubes[i] = trial;
    }
}

/* Irredundant: sort, then drop every cube contained in an earlier one. */
static void irredundant(cover *f) {
    qsort(f->cubes, f->len, sizeof(cube *), cmp_cubes);
    cover kept = {0};
    for (size_t i = 0; i < f->len; i++) {
        int covered = 0;
        for (size_t j = 0; j < kept.len && !covered; j++) covered = cube_contains(kept.cubes[j], f->cubes[i]);
        if (covered)
            free(f->cubes[i]);
        else
            cover_push(&kept, f->cubes[i]);
    }
    free(f->cubes);
    *f = kept;
}

/* Conflicting variables of a and b (bound to opposite values), up to 2. */
static int conflicts(const cube *a, const cube *b, int *where) {
    int n = 0;
    for (int w = 0; w < WORDS && n < 2; w++) {
        uint64_t x = a[w] & b[w];
        uint64_t empty = ~(x | (x >> 1)) & LOW;
        while (empty && n < 2) {
            *where = w * 32 + __builtin_ctzll(empty) / 2;
            empty &= empty - 1;
            n++;
        }
    }
    return n;
}

/* The consensus cover: for each pair in conflict on exactly one variable,
 * their intersection with that variable freed. */
static cover consensus(const cover *a, const cover *b, size_t limit) {
    cover out = {0};
    for (size_t i = 0; i < a->len && out.len < limit; i++)
        for (size_t j = i + 1; j < b->len && out.len < limit; j++) {
            int v;
            if (conflicts(a->cubes[i], b->cubes[j], &v) != 1) continue;
            cube *c = cube_new();
            for (int w = 0; w < WORDS; w++) c[w] = a->cubes[i][w] & b->cubes[j][w];
            c[v / 32] |= (uint64_t)3 << (2 * (v % 32));
            cover_push(&out, c);
        }
    return out;
}

static uint64_t checksum(const cover *f) {
    uint64_t h = f->len;
    for (size_t i = 0; i < f->len; i++)
        for (int w = 0; w < WORDS; w++) h = (h ^ f->cubes[i][w]) * 1099511628211ULL;
    return h;
}

int main(int argc, char **argv) {
    long scale = argc > 1 ? atol(argv[1]) : 1;
    if (scale < 1) scale = 1;
    uint64_t sum = 0;
    for (long problem = 0; problem < 5 * scale; problem++) {
        cover on = {0}, off = {0};
        for (int i = 0; i < 300; i++) cover_push(&on, cube_random(20));
        for (int i = 0; i < 60; i++) cover_push(&off, cube_random(10));
        for (int round = 0; round < 4; round++) {
            expand(&on, &off);
            irredundant(&on);
            cover extra = consensus(&on, &on, 2000);
            for (size_t i = 0; i < extra.len; i++) cover_push(&on, extra.cubes[i]);
            free(extra.cubes);
            irredundant(&on);
            /* Fresh random cubes keep the cover from collapsing. */
            for (int i = 0; i < 200; i++) cover_push(&on, cube_random(20));
            sum += checksum(&on);
        }
        cover_free(&on);
        cover_free(&off);
    }
    printf("espresso %llx\n", (unsigned long long)sum);
    return 0;
}
