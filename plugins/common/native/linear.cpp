// Linear layers on AMX: out = residual + gate * activation(x w^T + bias), each part where given,
// with bf16 operands and float32 sums, in one pass over the output.
//
// The weight w [N, K] is read where it is stored: its rows are the first operand of the tile
// products (16 outputs by 32 of K each), taken in place or, where a panel of them serves many
// input rows, copied once per task into the order the product loop reads them. The input
// x [M, K] is laid out once per call as the second operand (pairs of K by 16 rows), rounded to
// bf16 on the way where it comes in float32. The products thus come out transposed, outputs by
// rows, and are turned back 16 x 16 at a time as the post-ops write them.
//
// Each task takes a panel of output columns (a band of weight rows, CHUNK of K at a time, which
// stays in the L2 cache) and a range of input rows, 32 at a time; K is walked in steps of STEP,
// whose laid-out input (32 rows) stays in the L1 cache while every 32 outputs of the panel take it.

#include <algorithm>
#include <cstdint>
#include <functional>

// After the standard headers: the code they share with other files stays generic.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16")

#include "amx.hpp"
#include "buffer.hpp"
#include "pool.hpp"

namespace {

constexpr int STEP = 512;    // K per step: 32 laid-out input rows of it are 32 KB, in L1
constexpr int CHUNK = 2048;  // K per weight panel chunk: 128 rows of it are 512 KB, in L2
constexpr int PANEL = 128;   // outputs per task
constexpr int PASS_ROWS = 4096;  // input rows laid out at a time: 126 MB at K 15360
constexpr int TASK_ROWS = 512;  // input rows per task at most where K takes several chunks: sums of 256 KB

enum Activation { NONE = 0, GELU_TANH = 1, SILU = 2 };

// The 16 x 16 float32 block in r transposed in place (unpacks and shuffles within 128-bit lanes,
// then across them).
inline void transpose(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {  // column j of rows i..i+3 within each lane
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int j = 0; j < 4; ++j) {
        t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
        t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
    }
    for (int j = 0; j < 4; ++j) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
        r[4 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xDD);
    }
}

// x / (1 + exp(-a)): SiLU with a = x, GELU's tanh form with a = 2 sqrt(2/pi) (x + 0.044715 x^3).
inline __m512 gated_by_logistic(__m512 x, __m512 a) {
    const __m512 e = amx::exp_bounded(_mm512_min_ps(_mm512_sub_ps(_mm512_setzero_ps(), a), _mm512_set1_ps(80.0f)));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

inline __m512 activate(__m512 x, int activation) {
    if (activation == SILU) return gated_by_logistic(x, x);
    if (activation == GELU_TANH) {
        const __m512 cube = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
        const __m512 inner = _mm512_fmadd_ps(cube, _mm512_set1_ps(0.044715f), x);
        return gated_by_logistic(x, _mm512_mul_ps(inner, _mm512_set1_ps(1.5957691216057308f)));
    }
    return x;
}

struct Problem {
    const void *x;
    bool x_f32;
    long x_stride;
    int rows, width;  // M, K
    const uint16_t *weight;
    int outputs;  // N
    const float *bias, *gate, *residual;
    int activation;
    long residual_stride;
    void *out;
    bool out_bf16;
    long out_stride;
};

// Input rows [16 g, 16 g + 16) laid out as [K / 2][16] pairs (uint32), zero beyond the last row.
void lay_out_group(const Problem &p, uint32_t *to, int g) {
    for (int c = 0; c < p.width; c += 32) {
        __m512 r[16];
        for (int i = 0; i < 16; ++i) {
            const long row = 16L * g + i;
            if (row >= p.rows) {
                r[i] = _mm512_setzero_ps();
            } else if (p.x_f32) {
                const float *from = static_cast<const float *>(p.x) + row * p.x_stride + c;
                r[i] = (__m512)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(from + 16), _mm512_loadu_ps(from));
            } else {
                r[i] = _mm512_loadu_ps(static_cast<const uint16_t *>(p.x) + row * p.x_stride + c);
            }
        }
        transpose(r);
        for (int i = 0; i < 16; ++i) _mm512_storeu_ps(to + (long)(c / 2 + i) * 16, r[i]);
    }
}

// The post-ops of outputs [n0, n0 + count) for input rows [m0, m0 + 32): sums[n][32] (the
// products, outputs by rows) turned back and written to out.
void write(const Problem &p, const float *sums, int n0, int count, int m0) {
    for (int n = 0; n < count; n += 16) {
        for (int half = 0; half < 32; half += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(sums + (n + i) * 32 + half);
            transpose(r);  // r[j]: row m0 + half + j, outputs n0 + n .. + 16
            const int column = n0 + n;
            const __m512 bias = p.bias ? _mm512_loadu_ps(p.bias + column) : _mm512_setzero_ps();
            const __m512 gate = p.gate ? _mm512_loadu_ps(p.gate + column) : _mm512_set1_ps(1.0f);
            for (int j = 0; j < 16; ++j) {
                const long row = (long)m0 + half + j;
                if (row >= p.rows) break;
                __m512 v = activate(_mm512_add_ps(r[j], bias), p.activation);
                if (p.gate) v = _mm512_mul_ps(v, gate);
                if (p.residual) v = _mm512_add_ps(v, _mm512_loadu_ps(p.residual + row * p.residual_stride + column));
                if (p.out_bf16)
                    _mm256_storeu_si256(reinterpret_cast<__m256i *>(static_cast<uint16_t *>(p.out) + row * p.out_stride + column),
                                        (__m256i)_mm512_cvtneps_pbh(v));
                else
                    _mm512_storeu_ps(static_cast<float *>(p.out) + row * p.out_stride + column, v);
            }
        }
    }
}

// The weight rows [n0, n0 + count), columns [k0, k1), as the products read them: for each 32
// rows, [(k1 - k0) / 32][32][32] bf16, so that every step of the product loop reads 2 KB in a row
// (which the hardware prefetcher follows). Worth its copy only where the rows serve several input
// blocks.
void lay_out_panel(const Problem &p, uint16_t *to, int n0, int count, int k0, int k1) {
    const int chunks = (k1 - k0) / 32;
    for (int n = 0; n < count; ++n)
        for (int c = 0; c < chunks; ++c)
            _mm512_storeu_si512(to + ((long)(n / 32) * chunks + c) * 1024 + (n % 32) * 32,
                                _mm512_loadu_si512(p.weight + (long)(n0 + n) * p.width + k0 + 32L * c));
}

thread_local Buffer<float> sums_scratch;
thread_local Buffer<uint16_t> panel_scratch;

// Outputs [n0, n1) for input rows [m_first, m_last), from the laid-out input. K is taken a CHUNK
// at a time, every row block through each chunk, so the weight panel's chunk stays in L2 while
// the input rows stream past it; with several chunks, the sums of the task's rows wait in
// sums_scratch meanwhile. A row block is written once its last chunk is summed.
void compute(const Problem &p, const uint32_t *laid, int n0, int n1, int m_first, int m_last) {
    const int count = n1 - n0;
    const bool chunked = p.width > CHUNK;
    float *sums = sums_scratch.get((long)(chunked ? m_last - m_first : 32) * count);
    const bool relaid = m_last - m_first >= 4 * 32;
    uint16_t *panel = relaid ? panel_scratch.get((long)count * std::min(p.width, CHUNK)) : nullptr;
    const long pairs = p.width / 2;
    for (int c0 = 0; c0 < p.width; c0 += CHUNK) {
        const int c1 = std::min(p.width, c0 + CHUNK), chunks = (c1 - c0) / 32;
        if (relaid) lay_out_panel(p, panel, n0, count, c0, c1);
        for (int m0 = m_first; m0 < m_last; m0 += 32) {
            const uint32_t *group = laid + (long)(m0 / 16) * pairs * 16;
            float *block = chunked ? sums + (long)(m0 - m_first) * count : sums;  // [count][32]
            for (int k0 = c0; k0 < c1; k0 += STEP) {
                const int k1 = std::min(c1, k0 + STEP);
                for (int n = 0; n < count; n += 32) {
                    if (k0 == 0)
                        amx::zero_block();
                    else
                        amx::load_block(block + n * 32, 32);
                    for (int k = k0; k < k1; k += 32) {
                        const uint32_t *b = group + (long)(k / 2) * 16;
                        if (relaid) {
                            const uint16_t *a = panel + ((long)(n / 32) * chunks + (k - c0) / 32) * 1024;
                            amx::multiply_block(a, 64, b, b + pairs * 16, 64);
                        } else {
                            amx::multiply_block(p.weight + (long)(n0 + n) * p.width + k, 2L * p.width, b,
                                                b + pairs * 16, 64);
                        }
                    }
                    amx::store_block(block + n * 32, 32);
                }
            }
            if (c1 == p.width) write(p, block, n0, count, m0);
        }
    }
}

thread_local Buffer<uint32_t> laid_scratch;

// The product for rows that fit one pass: the input laid out on all threads, then the tasks.
void run(const Problem &p, threadpool_iface &threads) {
    const int groups = (p.rows + 31) / 32 * 2;  // 16-row groups, to a whole number of 32-row blocks
    const long per_group = 16L * p.width / 2;
    uint32_t *laid = laid_scratch.get(groups * per_group);
    threads.parallel_for(groups, [&](int g, int) { lay_out_group(p, laid + g * per_group, g); });

    // Tasks: panels of PANEL outputs by ranges of rows, split where panels are too few to keep
    // every thread busy, and to at most TASK_ROWS where K takes several chunks.
    const int panels = (p.outputs + PANEL - 1) / PANEL, blocks = groups / 2;
    const int busy = (4 * threads.get_num_threads() + panels - 1) / panels;
    const int bounded = p.width > CHUNK ? (p.rows + TASK_ROWS - 1) / TASK_ROWS : 1;
    const int splits = std::min(blocks, std::max(busy, bounded));
    threads.parallel_for(panels * splits, [&](int i, int) {
        const int n0 = (i / splits) * PANEL, s = i % splits;
        amx::configure_tiles();
        compute(p, laid, n0, std::min(p.outputs, n0 + PANEL), blocks * s / splits * 32, blocks * (s + 1) / splits * 32);
        _tile_release();
    });
}

}  // namespace

extern "C" {

// out = residual + gate * activation(x w^T + bias): x [rows, width] float32 (x_f32) or bf16 bits,
// rows x_stride elements apart; w [outputs, width] bf16 bits, contiguous; bias, gate [outputs]
// float32 or null; activation 0 (none), 1 (GELU, tanh form) or 2 (SiLU); residual float32
// [rows, outputs] (rows residual_stride apart) or null; out float32 or bf16 bits (out_bf16), rows
// out_stride apart. Returns 0, or 1 where the shapes are outside what the kernel takes (width or
// outputs not a multiple of 32) or AMX cannot be used.
int zoo_linear(void *pool, const void *x, int x_f32, long x_stride, int rows, int width, const uint16_t *weight,
               int outputs, const float *bias, int activation, const float *gate, const float *residual,
               long residual_stride, void *out, int out_bf16, long out_stride) {
    if (width % 32 || outputs % 32 || rows <= 0 || !amx::ready()) return 1;
    auto &threads = *static_cast<threadpool_iface *>(pool);
    for (int first = 0; first < rows; first += PASS_ROWS) {  // bounds the laid-out copy of the input
        const long x_at = (long)first * x_stride * (x_f32 ? 4 : 2), out_at = (long)first * out_stride * (out_bf16 ? 2 : 4);
        const Problem p{static_cast<const char *>(x) + x_at, x_f32 != 0, x_stride, std::min(PASS_ROWS, rows - first),
                        width, weight, outputs, bias, gate, residual == nullptr ? nullptr : residual + first * residual_stride,
                        activation, residual_stride, static_cast<char *>(out) + out_at, out_bf16 != 0, out_stride};
        run(p, threads);
    }
    return 0;
}

}
