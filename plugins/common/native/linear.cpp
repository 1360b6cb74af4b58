// Linear layers on AMX: out = residual + gate * activation(x w^T + bias), each part where given,
// in one pass over the output. Two kinds of product: bf16 operands with float32 sums, or int8
// operands with int32 sums, the weight's rows and the input's rows each with a scale (symmetric,
// per output and per input row), which the sums are multiplied by as they are written.
//
// The weight w [N, K] is read where it is stored: its rows are the first operand of the tile
// products (16 outputs by 64 bytes of K each: 32 bf16 or 64 int8), taken in place or, where a
// panel of them serves many input rows, copied once per task into the order the product loop
// reads them. The input x [M, K] is laid out once per call as the second operand (4-byte units
// of K, bf16 pairs or int8 quads, by 16 rows), rounded to bf16 or quantized to int8 on the way.
// The products thus come out transposed, outputs by rows, and are turned back 16 x 16 at a time
// as the post-ops write them.
//
// Each task takes a panel of output columns (a band of weight rows, CHUNK bytes of K at a time,
// which stays in the L2 cache) and a range of input rows, 32 at a time; K is walked in steps of
// STEP bytes, whose laid-out input (32 rows) stays in the L1 cache while every 32 outputs of the
// panel take it.

#include <algorithm>
#include <cstdint>
#include <functional>

// After the standard headers: the code they share with other files stays generic.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16,amx-int8")

#include "amx.hpp"
#include "buffer.hpp"
#include "pool.hpp"

namespace {

constexpr int TILE = 64;     // bytes of K per tile product
constexpr int STEP = 1024;   // bytes of K per step: 32 laid-out input rows of it are 32 KB, in L1
constexpr int CHUNK = 4096;  // bytes of K per weight panel chunk: 128 rows of it are 512 KB, in L2
constexpr int PANEL = 128;   // outputs per task
constexpr int PASS_ROWS = 4096;  // input rows laid out at a time: 126 MB of bf16 at K 15360
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
    const void *weight;  // bf16 bits, or int8 where weight_scales is given
    const float *weight_scales;
    int outputs;  // N
    const float *bias, *gate, *residual;
    int activation;
    long residual_stride;
    void *out;
    bool out_bf16;
    long out_stride;
    float *row_scales;  // int8: the input rows' scales, filled as they are laid out

    bool int8() const { return weight_scales != nullptr; }
    long row_bytes() const { return int8() ? width : 2L * width; }
    long units() const { return row_bytes() / 4; }  // 4-byte units of K in a row
};

// 16 values of x (float32 or bf16 bits) from element `at`, as float32.
inline __m512 load_floats(const void *x, bool x_f32, long at) {
    if (x_f32) return _mm512_loadu_ps(static_cast<const float *>(x) + at);
    const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(static_cast<const uint16_t *>(x) + at));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
}

// A row of `width` values (float32 or bf16 bits, width a multiple of 64) as int8 to `to`, rounded
// from x * 127 / max|x| (to nearest, ties to even); returns the scale max|x| / 127 (1 for a row
// of zeros).
float quantize_row(const void *x, bool x_f32, long at, int width, int8_t *to) {
    const __m512 magnitude = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
    __m512 largest = _mm512_setzero_ps();
    for (int c = 0; c < width; c += 16) largest = _mm512_max_ps(largest, _mm512_and_ps(load_floats(x, x_f32, at + c), magnitude));
    const float top = _mm512_reduce_max_ps(largest);
    if (top == 0.0f) {
        std::fill(to, to + width, 0);
        return 1.0f;
    }
    const __m512 inverse = _mm512_set1_ps(127.0f / top);
    for (int c = 0; c < width; c += 16)
        _mm_storeu_si128(reinterpret_cast<__m128i *>(to + c),
                         _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(load_floats(x, x_f32, at + c), inverse))));
    return top / 127.0f;
}

thread_local Buffer<int8_t> quantized_scratch;

// Input rows [16 g, 16 g + 16) laid out as [units][16] 4-byte units, zero beyond the last row:
// bf16 pairs, or int8 quads (each row quantized first, its scale kept in row_scales).
void lay_out_group(const Problem &p, uint32_t *to, int g) {
    int8_t *quantized = p.int8() ? quantized_scratch.get(16L * p.width) : nullptr;
    if (quantized)
        for (int i = 0; i < 16; ++i) {
            const long row = 16L * g + i;
            if (row < p.rows)
                p.row_scales[row] = quantize_row(p.x, p.x_f32, row * p.x_stride, p.width, quantized + i * p.width);
            else
                p.row_scales[row] = 0.0f;
        }
    const long per_tile = p.int8() ? 64 : 32;  // K per 64 bytes
    for (long c = 0; c < p.width; c += per_tile) {
        __m512 r[16];
        for (int i = 0; i < 16; ++i) {
            const long row = 16L * g + i;
            if (row >= p.rows) {
                r[i] = _mm512_setzero_ps();
            } else if (quantized) {
                r[i] = _mm512_loadu_ps(quantized + i * p.width + c);
            } else if (p.x_f32) {
                const float *from = static_cast<const float *>(p.x) + row * p.x_stride + c;
                r[i] = (__m512)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(from + 16), _mm512_loadu_ps(from));
            } else {
                r[i] = _mm512_loadu_ps(static_cast<const uint16_t *>(p.x) + row * p.x_stride + c);
            }
        }
        transpose(r);
        const long unit = c / (per_tile / 16);
        for (int i = 0; i < 16; ++i) _mm512_storeu_ps(to + (unit + i) * 16, r[i]);
    }
}

// The post-ops of outputs [n0, n0 + count) for input rows [m0, m0 + 32): sums[n][32] (the
// products, outputs by rows; int32 for int8, scaled here) turned back and written to out.
void write(const Problem &p, const float *sums, int n0, int count, int m0) {
    for (int n = 0; n < count; n += 16) {
        for (int half = 0; half < 32; half += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(sums + (n + i) * 32 + half);
            transpose(r);  // r[j]: row m0 + half + j, outputs n0 + n .. + 16
            const int column = n0 + n;
            const __m512 bias = p.bias ? _mm512_loadu_ps(p.bias + column) : _mm512_setzero_ps();
            const __m512 gate = p.gate ? _mm512_loadu_ps(p.gate + column) : _mm512_set1_ps(1.0f);
            const __m512 weight_scale = p.int8() ? _mm512_loadu_ps(p.weight_scales + column) : _mm512_setzero_ps();
            for (int j = 0; j < 16; ++j) {
                const long row = (long)m0 + half + j;
                if (row >= p.rows) break;
                __m512 v = r[j];
                if (p.int8())
                    v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_castps_si512(v)),
                                      _mm512_mul_ps(weight_scale, _mm512_set1_ps(p.row_scales[row])));
                v = activate(_mm512_add_ps(v, bias), p.activation);
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

// The weight rows [n0, n0 + count), bytes [k0, k1) of each, as the products read them: for each
// 32 rows, [(k1 - k0) / 64][32][64] bytes, so that every step of the product loop reads 2 KB in a
// row (which the hardware prefetcher follows). Worth its copy only where the rows serve several
// input blocks.
void lay_out_panel(const Problem &p, char *to, int n0, int count, long k0, long k1) {
    const long tiles = (k1 - k0) / TILE;
    const char *weight = static_cast<const char *>(p.weight);
    for (int n = 0; n < count; ++n)
        for (long c = 0; c < tiles; ++c)
            _mm512_storeu_si512(to + ((long)(n / 32) * tiles + c) * 2048 + (n % 32) * TILE,
                                _mm512_loadu_si512(weight + (long)(n0 + n) * p.row_bytes() + k0 + TILE * c));
}

thread_local Buffer<float> sums_scratch;
thread_local Buffer<char> panel_scratch;

// Outputs [n0, n1) for input rows [m_first, m_last), from the laid-out input. K is taken a CHUNK
// at a time, every row block through each chunk, so the weight panel's chunk stays in L2 while
// the input rows stream past it; with several chunks, the sums of the task's rows wait in
// sums_scratch meanwhile. A row block is written once its last chunk is summed.
template <bool INT8>
void compute(const Problem &p, const uint32_t *laid, int n0, int n1, int m_first, int m_last) {
    const int count = n1 - n0;
    const long row_bytes = p.row_bytes(), units = p.units();
    const bool chunked = row_bytes > CHUNK;
    float *sums = sums_scratch.get((long)(chunked ? m_last - m_first : 32) * count);
    const bool relaid = m_last - m_first >= 4 * 32;
    char *panel = relaid ? panel_scratch.get((long)count * std::min(row_bytes, (long)CHUNK)) : nullptr;
    const char *weight = static_cast<const char *>(p.weight);
    for (long c0 = 0; c0 < row_bytes; c0 += CHUNK) {
        const long c1 = std::min(row_bytes, c0 + CHUNK), tiles = (c1 - c0) / TILE;
        if (relaid) lay_out_panel(p, panel, n0, count, c0, c1);
        for (int m0 = m_first; m0 < m_last; m0 += 32) {
            const uint32_t *group = laid + (long)(m0 / 16) * units * 16;
            float *block = chunked ? sums + (long)(m0 - m_first) * count : sums;  // [count][32]
            for (long k0 = c0; k0 < c1; k0 += STEP) {
                const long k1 = std::min(c1, k0 + STEP);
                for (int n = 0; n < count; n += 32) {
                    if (k0 == 0)
                        amx::zero_block();
                    else
                        amx::load_block(block + n * 32, 32);
                    for (long k = k0; k < k1; k += TILE) {
                        const uint32_t *b = group + (k / 4) * 16;
                        const char *a = relaid ? panel + ((long)(n / 32) * tiles + (k - c0) / TILE) * 2048
                                               : weight + (long)(n0 + n) * row_bytes + k;
                        amx::multiply_block<INT8>(a, relaid ? TILE : row_bytes, b, b + units * 16, 64);
                    }
                    amx::store_block(block + n * 32, 32);
                }
            }
            if (c1 == row_bytes) write(p, block, n0, count, m0);
        }
    }
}

thread_local Buffer<uint32_t> laid_scratch;
thread_local Buffer<float> row_scales_scratch;

// The product for rows that fit one pass: the input laid out on all threads, then the tasks.
void run(Problem p, threadpool_iface &threads) {
    const int groups = (p.rows + 31) / 32 * 2;  // 16-row groups, to a whole number of 32-row blocks
    const long per_group = 16L * p.units();
    uint32_t *laid = laid_scratch.get(groups * per_group);
    if (p.int8()) p.row_scales = row_scales_scratch.get(16L * groups);
    threads.parallel_for(groups, [&](int g, int) { lay_out_group(p, laid + g * per_group, g); });

    // Tasks: panels of PANEL outputs by ranges of rows, split where panels are too few to keep
    // every thread busy, and to at most TASK_ROWS where K takes several chunks.
    const int panels = (p.outputs + PANEL - 1) / PANEL, blocks = groups / 2;
    const int busy = (4 * threads.get_num_threads() + panels - 1) / panels;
    const int bounded = p.row_bytes() > CHUNK ? (p.rows + TASK_ROWS - 1) / TASK_ROWS : 1;
    const int splits = std::min(blocks, std::max(busy, bounded));
    threads.parallel_for(panels * splits, [&](int i, int) {
        const int n0 = (i / splits) * PANEL, s = i % splits, n1 = std::min(p.outputs, n0 + PANEL);
        const int m_first = blocks * s / splits * 32, m_last = blocks * (s + 1) / splits * 32;
        amx::configure_tiles();
        if (p.int8())
            compute<true>(p, laid, n0, n1, m_first, m_last);
        else
            compute<false>(p, laid, n0, n1, m_first, m_last);
        _tile_release();
    });
}

// The product in passes of at most PASS_ROWS input rows (which bounds the laid-out copy).
void run_passes(threadpool_iface &threads, Problem p) {
    const int rows = p.rows;
    const char *x = static_cast<const char *>(p.x);
    char *out = static_cast<char *>(p.out);
    const float *residual = p.residual;
    for (int first = 0; first < rows; first += PASS_ROWS) {
        p.x = x + (long)first * p.x_stride * (p.x_f32 ? 4 : 2);
        p.out = out + (long)first * p.out_stride * (p.out_bf16 ? 2 : 4);
        p.residual = residual == nullptr ? nullptr : residual + first * p.residual_stride;
        p.rows = std::min(PASS_ROWS, rows - first);
        run(p, threads);
    }
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
    run_passes(*static_cast<threadpool_iface *>(pool),
               Problem{x, x_f32 != 0, x_stride, rows, width, weight, nullptr, outputs, bias, gate, residual,
                       activation, residual_stride, out, out_bf16 != 0, out_stride, nullptr});
    return 0;
}

// zoo_linear with the product in int8: w [outputs, width] int8, w_scales [outputs] its rows' scales
// (w times its row's scale is the weight); each input row is quantized as it is laid out (see
// quantize_row), and the int32 sums times both scales are the product. Returns 1 where width is
// not a multiple of 64 or outputs of 32, or AMX cannot be used.
int zoo_linear_int8(void *pool, const void *x, int x_f32, long x_stride, int rows, int width, const int8_t *weight,
                    const float *weight_scales, int outputs, const float *bias, int activation, const float *gate,
                    const float *residual, long residual_stride, void *out, int out_bf16, long out_stride) {
    if (width % 64 || outputs % 32 || rows <= 0 || !amx::ready()) return 1;
    run_passes(*static_cast<threadpool_iface *>(pool),
               Problem{x, x_f32 != 0, x_stride, rows, width, weight, weight_scales, outputs, bias, gate,
                       residual, activation, residual_stride, out, out_bf16 != 0, out_stride, nullptr});
    return 0;
}

// Each of `rows` rows of x (float32 or bf16 bits, rows x_stride elements apart, width a multiple
// of 64) quantized to int8 into `out` [rows, width], its scale into scales[row] (see quantize_row):
// how weights are made ready for zoo_linear_int8, on the pool's threads.
void zoo_quantize_rows(void *pool, const void *x, int x_f32, long x_stride, int rows, int width, int8_t *out,
                       float *scales) {
    static_cast<threadpool_iface *>(pool)->parallel_for(rows, [&](int row, int) {
        scales[row] = quantize_row(x, x_f32 != 0, row * x_stride, width, out + (long)row * width);
    });
}

}
