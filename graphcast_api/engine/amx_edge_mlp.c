/* An edge MLP of GraphCast as one pass over its edges, on Intel AMX (bf16).

   For a block of 32 edge rows, while the block is in cache:
     first    = [edge @ W1] + term_1[index_1] + ... + term_t[index_t] + b1   (float32)
     hidden   = bf16(swish(first))
     message  = LayerNorm(hidden @ W2 + b2)                         (float32)
     sums[receiver] += message;  [edge += message (in place, bf16)]
   with float32 sums added to, or bf16 sums written once per receiver. The processor passes
   its edge latents (the product with W1 and the residual update) and the sender and
   receiver projections as terms; the encoder and the decoder have no edge latents, their
   terms are the static edge term and the sender and receiver ones. This is what
   network.encode, process and decode compute with separate products and fused element-wise
   kernels, the products accumulating in float32 as oneDNN's do, but each edge-sized tensor
   is read or written once instead of about ten times.

   Weights come packed for AMX (see amx.pack): for each 16 output columns, the K rows in
   pairs, [N/16][K/2][16][2]. Edges come sorted by receiver and are split among threads at
   receiver boundaries, so no two threads add to one receiver's sums. Built and loaded by
   amx.py. */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ROWS 32          /* edge rows per block: two AMX tiles of 16 */
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} TileConfig;

#define MAX_TERMS 3

typedef struct {                 /* one gathered term: rows of a [nodes][batch or 1][latent] */
    const uint16_t *table;       /* table, by its edge's index (none: the edge's own row) */
    const int64_t *index;
    int64_t batched;
} Term;

typedef struct {
    uint16_t *edge;              /* NULL: no product with W1, no edge update */
    const uint16_t *w1, *w2;
    Term terms[MAX_TERMS];
    int64_t count;               /* terms */
    const int64_t *receivers;
    int64_t batch, latent;
    const float *b1, *b2, *scale, *offset;
    float *sums;                 /* added to; or NULL, and then: */
    uint16_t *aggregated;        /* [nodes][batch][latent], each row set to its sums (bf16) */
    int64_t first_row, end_row;  /* this thread's edge rows */
    int64_t first_node, end_node;  /* and receivers: [first_node, end_node) */
    int64_t current;             /* aggregated: the receiver whose sums `running` holds */
    float *running;              /* [batch][latent] */
    int status;
} Work;

/* Ask Linux for the AMX tile state (once per process); 0 when granted. */
int gc_amx_init(void) {
    return (int)syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA);
}

static void configure_tiles(void) {
    TileConfig config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; ++t) {  /* every tile 16 rows of 64 bytes */
        config.rows[t] = 16;
        config.colsb[t] = 64;
    }
    _tile_loadconfig(&config);
}

static inline __m512 load_bf16(const uint16_t *p) {
    __m256i raw = _mm256_loadu_si256((const __m256i *)p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

static inline void store_bf16(uint16_t *p, __m512 x) {
    _mm256_storeu_si256((__m256i *)p, (__m256i)_mm512_cvtneps_pbh(x));
}

/* x * sigmoid(x) = x / (1 + 2^(-x log2 e)): 2^f by a degree-4 polynomial on [-1/2, 1/2]
   (relative error 4e-5) and 1/d by rcp14 (6e-5), far below the 4e-3 of the bf16 rounding
   that follows; a huge |x| gives x or about 0. */
static inline __m512 swish(__m512 x) {
    const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(-1.44269504f));
    const __m512 n = _mm512_min_ps(  /* 2^126 at most: 1 + 2^t stays finite for rcp14 */
        _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
        _mm512_set1_ps(126.0f));
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(9.6181291e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504109e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022651e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    const __m512 d = _mm512_add_ps(_mm512_scalef_ps(p, n), _mm512_set1_ps(1.0f));
    return _mm512_mul_ps(x, _mm512_rcp14_ps(d));
}

/* One block's rows: where each row's gathered terms are, and the running sums of its
   LayerNorm statistics. Rows past a partial block's end point at its first row's terms. */
typedef struct {
    const uint16_t *term[MAX_TERMS][ROWS];
    __m512 total[ROWS], squares[ROWS];
} Block;

enum Epilogue { HIDDEN, STATISTICS };

/* hidden = bf16(swish(x + b1 + the row's terms)) for 16 columns [j, j + 16) of one row */
static inline void hidden_columns(const Work *w, const Block *b, __m512 x, uint16_t *hidden,
                                  int64_t row, int64_t j, int terms) {
    x = _mm512_add_ps(x, _mm512_loadu_ps(w->b1 + j));
    for (int t = 0; t < terms; ++t) x = _mm512_add_ps(x, load_bf16(b->term[t][row] + j));
    store_bf16(hidden + row * w->latent + j, swish(x));
}

/* The element-wise work on 16 columns [j, j + 16) of one row, once the product wrote them:
   HIDDEN: hidden_columns of the product; STATISTICS: first += b2, and the row's sums of x
   and x² for its LayerNorm. */
static inline void epilogue(const Work *w, Block *b, float *first, uint16_t *hidden,
                            enum Epilogue kind, int terms, int64_t row, int64_t j) {
    float *x = first + row * w->latent + j;
    if (kind == HIDDEN) {
        hidden_columns(w, b, _mm512_loadu_ps(x), hidden, row, j, terms);
    } else {
        const __m512 v = _mm512_add_ps(_mm512_loadu_ps(x), _mm512_loadu_ps(w->b2 + j));
        _mm512_storeu_ps(x, v);
        b->total[row] = _mm512_add_ps(b->total[row], v);
        b->squares[row] = _mm512_fmadd_ps(v, v, b->squares[row]);
    }
}

/* out[32][n] (float32) = a[32][n] (bf16, row stride n) @ packed weight [n][n], and the
   epilogue of each 32 output columns, run while the AMX unit computes the next 32: a few
   rows' worth after each step of the inner loop, so that the core's vector units and the
   tile unit work at once. Inlined, so that `terms` is a constant in each of its uses (a
   loop over a variable number of terms cost the processor's kernel 10 %). */
static inline __attribute__((always_inline)) void product(
        const Work *w, Block *b, const uint16_t *a, const uint16_t *weight, float *out,
        uint16_t *hidden, enum Epilogue kind, int terms) {
    const int64_t n = w->latent, stride = n * 2, block = (n / 2) * 32;
    const int64_t units = ROWS * 2, per_step = (units + n / 32 - 1) / (n / 32);
    for (int64_t col = 0; col <= n; col += 32) {
        int64_t unit = 0;
        if (col < n) {
            const uint16_t *w0 = weight + (col / 16) * block, *w1 = w0 + block;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int64_t kk = 0; kk < n; kk += 32) {
                _tile_loadd(4, a + kk, stride);
                _tile_loadd(5, a + 16 * n + kk, stride);
                _tile_loadd(6, w0 + kk * 16, 64);
                _tile_loadd(7, w1 + kk * 16, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
                for (int64_t u = 0; col > 0 && u < per_step && unit < units; ++u, ++unit)
                    epilogue(w, b, out, hidden, kind, terms, unit >> 1, col - 32 + (unit & 1) * 16);
            }
        }
        for (; col > 0 && unit < units; ++unit)
            epilogue(w, b, out, hidden, kind, terms, unit >> 1, col - 32 + (unit & 1) * 16);
        if (col < n) {
            _tile_stored(0, out + col, n * 4);
            _tile_stored(1, out + col + 16, n * 4);
            _tile_stored(2, out + 16 * n + col, n * 4);
            _tile_stored(3, out + 16 * n + col + 16, n * 4);
        }
    }
}

/* message = LayerNorm(x) from the row's statistics (variance E[x²] - E[x]², as
   network.layer_norm in bf16); sums += message, and edge += message (rounded once, to bf16)
   unless edge is NULL. The unfused path rounds the message to bf16 first. */
static void message_row(const Work *w, const float *x, __m512 total, __m512 squares,
                        uint16_t *edge, float *sums) {
    const int64_t n = w->latent;
    const float mean = _mm512_reduce_add_ps(total) / (float)n;
    const float variance = fmaxf(_mm512_reduce_add_ps(squares) / (float)n - mean * mean, 0.0f);
    const __m512 m = _mm512_set1_ps(mean), inverse = _mm512_set1_ps(1.0f / sqrtf(variance + 1e-5f));
    for (int64_t j = 0; j < n; j += 16) {
        __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + j), m), inverse);
        v = _mm512_fmadd_ps(v, _mm512_loadu_ps(w->scale + j), _mm512_loadu_ps(w->offset + j));
        if (edge != NULL) store_bf16(edge + j, _mm512_add_ps(load_bf16(edge + j), v));
        _mm512_storeu_ps(sums + j, _mm512_add_ps(_mm512_loadu_ps(sums + j), v));
    }
}

/* Aggregated: write the sums of receivers [current, node) out (those past `current` had no
   edges: zeros) and start on `node`'s. */
static void next_receiver(Work *w, int64_t node) {
    const int64_t size = w->batch * w->latent;
    if (w->current < node && w->current >= w->first_node) {
        for (int64_t j = 0; j < size; j += 16)
            store_bf16(w->aggregated + w->current * size + j, _mm512_loadu_ps(w->running + j));
        w->current += 1;
    }
    if (w->current < node)
        memset(w->aggregated + w->current * size, 0, (node - w->current) * size * 2);
    memset(w->running, 0, size * 4);
    w->current = node;
}

/* Where row `row` (edge row / batch, batch item row % batch) finds term `t`. */
static inline const uint16_t *term_row(const Work *w, int t, int64_t row) {
    const Term *term = &w->terms[t];
    const int64_t e = row / w->batch, node = term->index != NULL ? term->index[e] : e;
    return term->table + (term->batched ? node * w->batch + row % w->batch : node) * w->latent;
}

/* One block of `count` <= ROWS rows from `row0`; scratch: a [ROWS][n] bf16, first [ROWS][n]
   float32, hidden [ROWS][n] bf16. A partial block's edge rows are copied into `a` first. */
static void run_block(Work *w, Block *b, int64_t row0, int64_t count, uint16_t *a,
                      float *first, uint16_t *hidden) {
    const int64_t n = w->latent;
    uint16_t *edge = w->edge != NULL ? w->edge + row0 * n : NULL;
    for (int64_t i = 0; i < ROWS; ++i) {
        b->total[i] = b->squares[i] = _mm512_setzero_ps();
        for (int t = 0; t < w->count; ++t)
            b->term[t][i] = term_row(w, t, row0 + (i < count ? i : 0));
    }
    if (edge == NULL) {  /* the encoder's and the decoder's: static term, sender, receiver */
        const int terms = (int)w->count;
        for (int64_t i = 0; i < ROWS; ++i)
            for (int64_t j = 0; j < n; j += 16) {
                if (terms == 3) hidden_columns(w, b, _mm512_setzero_ps(), hidden, i, j, 3);
                else hidden_columns(w, b, _mm512_setzero_ps(), hidden, i, j, terms);
            }
    } else {
        const uint16_t *rows = edge;
        if (count < ROWS) rows = memcpy(a, edge, count * n * 2);
        if (w->count == 2)  /* the processor's: sender and receiver */
            product(w, b, rows, w->w1, first, hidden, HIDDEN, 2);
        else
            product(w, b, rows, w->w1, first, hidden, HIDDEN, (int)w->count);
    }
    product(w, b, hidden, w->w2, first, NULL, STATISTICS, 0);
    for (int64_t i = 0; i < count; ++i) {
        const int64_t row = row0 + i, node = w->receivers[row / w->batch], item = row % w->batch;
        float *sums = w->running + item * n;
        if (w->sums != NULL) sums = w->sums + (node * w->batch + item) * n;
        else if (node != w->current) next_receiver(w, node);
        message_row(w, first + i * n, b->total[i], b->squares[i],
                    edge != NULL ? edge + i * n : NULL, sums);
    }
}

static void run(Work *w) {
    const int64_t n = w->latent;
    uint16_t *a = aligned_alloc(64, ROWS * n * 2), *hidden = aligned_alloc(64, ROWS * n * 2);
    float *first = aligned_alloc(64, ROWS * n * 4);
    Block *b = aligned_alloc(64, sizeof(Block));
    w->running = aligned_alloc(64, w->batch * n * 4);
    w->current = w->first_node;
    if (a == NULL || hidden == NULL || first == NULL || b == NULL || w->running == NULL) {
        w->status = 1;
    } else {
        memset(a, 0, ROWS * n * 2);  /* rows past a partial block: any finite values */
        if (w->sums == NULL) next_receiver(w, w->first_node);
        configure_tiles();
        for (int64_t row = w->first_row; row < w->end_row; row += ROWS) {
            const int64_t left = w->end_row - row;
            run_block(w, b, row, left < ROWS ? left : ROWS, a, first, hidden);
        }
        _tile_release();
        if (w->sums == NULL) next_receiver(w, w->end_node);  /* the last receivers' sums */
    }
    free(w->running);
    free(a);
    free(hidden);
    free(first);
    free(b);
}

/* The first edge of part `part` of `parts`: near an equal share, moved forward to the
   start of a receiver's run of edges, so that no two parts add to one receiver's sums. */
static int64_t part_start(const int64_t *receivers, int64_t edges, int part, int parts) {
    int64_t e = edges * part / parts;
    while (e > 0 && e < edges && receivers[e] == receivers[e - 1]) ++e;
    return e;
}

/* The first receiver of part `part` of `parts` (see part_start); `nodes` past the last. */
static int64_t part_node(const int64_t *receivers, int64_t edges, int64_t nodes, int part,
                         int parts) {
    const int64_t e = part_start(receivers, edges, part, parts);
    return part == 0 ? 0 : e < edges ? receivers[e] : nodes;
}

/* The edge MLP over all edges (see the top of this file), on the OpenMP threads (torch's
   own pool: the same libgomp). edge [edges * batch][latent] bf16 or NULL; `count` terms:
   tables[t] [nodes_t][batch if batched[t] else 1][latent] bf16, indices[t] [edges] (NULL:
   the edge itself); receivers [edges], sorted, below `nodes`; sums [nodes][batch][latent]:
   float32, added to, or bf16 (sums_bf16 != 0), every row set to its receiver's sums;
   weights packed [latent][latent]; b1, b2, scale, offset float32 [latent]; latent a
   multiple of 32. Returns 0; 1 if scratch memory could not be had, 2 for arguments out of
   range. */
int gc_edge_mlp(uint16_t *edge, const uint16_t *w1, const uint16_t *const *tables,
                const int64_t *const *indices, const int64_t *batched, int64_t count,
                const int64_t *receivers, int64_t batch, int64_t latent, int64_t edges,
                const float *b1, const uint16_t *w2, const float *b2, const float *scale,
                const float *offset, void *sums, int64_t sums_bf16, int64_t nodes) {
    if (latent % 32 != 0 || batch < 1 || edges < 0 || count < 0 || count > MAX_TERMS)
        return 2;
    int status = 0;
#pragma omp parallel reduction(| : status)
    {
        const int part = omp_get_thread_num(), parts = omp_get_num_threads();
        Work work = {edge, w1, w2, {{0}}, count, receivers, batch, latent, b1, b2, scale,
                     offset, sums_bf16 ? NULL : sums, sums_bf16 ? sums : NULL,
                     part_start(receivers, edges, part, parts) * batch,
                     part_start(receivers, edges, part + 1, parts) * batch,
                     part_node(receivers, edges, nodes, part, parts),
                     part_node(receivers, edges, nodes, part + 1, parts), 0, NULL, 0};
        for (int64_t t = 0; t < count; ++t)
            work.terms[t] = (Term){tables[t], indices[t], batched[t]};
        run(&work);
        status |= work.status;
    }
    return status;
}
