// Fused attention on AMX: softmax(q k^T) v for each batch item and head, in bf16 with float32
// scores, sums and output accumulators, without writing a score matrix to memory.
//
// Each task takes 32 queries of one head (two 16-row tiles) and walks the keys in steps of
// KEYS: the scores of a step (tile products over the head dimension), an online softmax on
// them (AVX-512: running row maxima and sums, earlier outputs rescaled when a row's maximum
// moves past a slack), the probabilities rounded to bf16 and multiplied into the output
// accumulator (tile products over the keys).
// Keys and values are first laid out once per head as the tile products read them.
//
// Only reached where the CPU has AMX-BF16 (the caller checks the CPU flags); built for those
// instructions by the target pragma, so the rest of the module needs no special flags.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <functional>
#include <vector>

// After the standard headers: the code they share with other files stays generic.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16")

#include "amx.hpp"
#include "buffer.hpp"
#include "pool.hpp"

namespace {

constexpr int ROWS = 32;   // queries per task: two tiles of 16 rows
constexpr int KEYS = 256;  // keys per online-softmax step (a multiple of 32)
constexpr float EXP_SAFE = 60.0f;  // as onednn.EXP_SAFE: exp of scores up to this needs no shift

inline int round_up(int n, int to) { return (n + to - 1) / to * to; }

// 2^t to about 3e-6 relative (enough for probabilities rounded to bf16, 2^-9 apart, and for their
// float32 sums): 2^n 2^f with n = round(t), a degree-4 near-minimax polynomial for 2^f, |f| <= 1/2.
// Below -127 (masked keys, -inf) it gives 2^-127, which adds nothing visible.
inline __m512 exp2_for_bf16(__m512 t) {
    t = _mm512_max_ps(t, _mm512_set1_ps(-127.0f));
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(0.009582852f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.05590643f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24024099f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.69312418f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

struct Shapes {
    int batch, queries, keys, heads, dim;
    int dim_padded, keys_padded;  // dim to a multiple of 32; keys to a multiple of 32
};

// One head's keys as the score products read them: pairs of dimensions (uint32) by key,
// [dim_padded / 2][keys_padded], zero beyond the real keys and dimensions. Transposed 16 keys at
// a time, so the rows read stay in the L1 cache.
void lay_out_keys(const uint16_t *key, uint32_t *out, const Shapes &s, int b, int h) {
    const int pairs = s.dim_padded / 2, real = s.dim / 2;
    for (int n0 = 0; n0 < s.keys_padded; n0 += 16) {
        const uint32_t *rows[16];
        for (int n = 0; n < 16; ++n)
            rows[n] = n0 + n < s.keys
                          ? reinterpret_cast<const uint32_t *>(key + ((long)(b * s.keys + n0 + n) * s.heads + h) * s.dim)
                          : nullptr;
        for (int d = 0; d < pairs; ++d) {
            uint32_t *to = out + (long)d * s.keys_padded + n0;
            for (int n = 0; n < 16; ++n) to[n] = rows[n] != nullptr && d < real ? rows[n][d] : 0;
        }
    }
}

// One head's values as the output products read them: pairs of keys by dimension,
// [keys_padded / 2][dim_padded][2] bf16, zero beyond the real keys and dimensions.
void lay_out_values(const uint16_t *value, uint16_t *out, const Shapes &s, int b, int h) {
    const int dp = s.dim_padded;
    alignas(64) uint16_t rows[2][256];
    for (int n = 0; n < s.keys_padded; n += 2) {
        for (int r = 0; r < 2; ++r) {
            std::memset(rows[r], 0, sizeof(uint16_t) * dp);
            if (n + r < s.keys)
                std::memcpy(rows[r], value + ((long)(b * s.keys + n + r) * s.heads + h) * s.dim,
                            sizeof(uint16_t) * s.dim);
        }
        uint16_t *pair = out + (long)(n / 2) * dp * 2;
        for (int d = 0; d < dp; ++d) pair[2 * d] = rows[0][d], pair[2 * d + 1] = rows[1][d];
    }
}

// A thread's working memory for one task (about 100 KB, in its L2 cache).
struct Scratch {
    alignas(64) uint16_t q[ROWS * 256];
    alignas(64) float scores[ROWS * KEYS];
    alignas(64) uint16_t probs[ROWS * KEYS];
    alignas(64) float acc[ROWS * 256];
    float maxima[ROWS], sums[ROWS];
};

thread_local Scratch scratch;

struct Task {
    const Shapes &s;
    const uint16_t *query;
    const uint32_t *keys;    // this head's laid-out keys
    const uint16_t *values;  // this head's laid-out values
    const float *additive;   // this item's [keys_padded]: 0, or -inf for masked and padding keys
    bool masks;              // whether some real key of this item is masked
    bool bounded;            // whether this head's scores are known to lie within +-EXP_SAFE
    int b, h, first;         // batch item, head, first query
    uint16_t *q = scratch.q, *probs = scratch.probs;
    float *scores = scratch.scores, *acc = scratch.acc, *maxima = scratch.maxima, *sums = scratch.sums;

    void load_queries() {
        const int dp = s.dim_padded;
        std::memset(q, 0, sizeof(uint16_t) * ROWS * dp);
        for (int i = 0; i < ROWS && first + i < s.queries; ++i)
            std::memcpy(q + i * dp, query + ((long)(b * s.queries + first + i) * s.heads + h) * s.dim,
                        sizeof(uint16_t) * s.dim);
        std::memset(acc, 0, sizeof(float) * ROWS * dp);
        for (int i = 0; i < ROWS; ++i) maxima[i] = -INFINITY, sums[i] = 0.0f;
    }

    // scores[:, :width] = q k^T for keys [start, start + width).
    void score(int start, int width) {
        const int dp = s.dim_padded;
        for (int j = 0; j < width; j += 32) {
            amx::zero_block();
            for (int c = 0; c < dp; c += 32) {
                const uint32_t *k = keys + (long)(c / 2) * s.keys_padded + start + j;
                amx::multiply_block(q + c, dp * 2, k, k + 16, s.keys_padded * 4);
            }
            amx::store_block(scores + j, KEYS);
        }
    }

    // exp(x - top) for x in row[:width], into p as bf16; returns their sum, and the largest x in
    // `largest`.
    static float exponentiate(const float *row, uint16_t *p, int width, float top, float &largest) {
        constexpr float LOG2E = 1.44269504088896341f;  // exp(x - top) = 2^(x log2(e) - top log2(e))
        const __m512 log2e = _mm512_set1_ps(LOG2E), shift = _mm512_set1_ps(-top * LOG2E);
        __m512 total = _mm512_setzero_ps(), highest = _mm512_set1_ps(-INFINITY);
        for (int j = 0; j < width; j += 16) {
            const __m512 x = _mm512_load_ps(row + j);
            const __m512 e = exp2_for_bf16(_mm512_fmadd_ps(x, log2e, shift));
            highest = _mm512_max_ps(highest, x);
            total = _mm512_add_ps(total, e);
            _mm256_store_si256(reinterpret_cast<__m256i *>(p + j), (__m256i)_mm512_cvtneps_pbh(e));
        }
        largest = _mm512_reduce_max_ps(highest);
        return _mm512_reduce_add_ps(total);
    }

    // The online softmax over this step's scores: probabilities in bf16, sums updated. A bounded
    // head (|scores| at most 60) takes exp of its scores as they are. Otherwise each row is shifted
    // by the largest score seen before this step, and only where this step's largest exceeds that
    // by more than SLACK (so that no probability passes e^SLACK) is the row taken again with the
    // new maximum and its accumulated outputs rescaled: past a row's first step, mostly one pass.
    void soften(int start, int width) {
        constexpr float SLACK = 16.0f;  // probabilities up to e^16 = 9e6: far from float32's limits
        const bool masked = masks || start + width > s.keys;
        for (int i = 0; i < ROWS; ++i) {
            float *row = scores + i * KEYS;
            uint16_t *p = probs + i * KEYS;
            if (masked)
                for (int j = 0; j < width; j += 16)
                    _mm512_store_ps(row + j, _mm512_add_ps(_mm512_load_ps(row + j), _mm512_loadu_ps(additive + start + j)));
            float largest;
            if (bounded) {
                sums[i] += exponentiate(row, p, width, 0.0f, largest);
                continue;
            }
            const float reference = maxima[i];
            if (reference != -INFINITY) {
                const float total = exponentiate(row, p, width, reference, largest);
                if (largest <= reference + SLACK) {
                    sums[i] += total;
                    continue;
                }
            } else {
                __m512 highest = _mm512_set1_ps(-INFINITY);
                for (int j = 0; j < width; j += 16) highest = _mm512_max_ps(highest, _mm512_load_ps(row + j));
                largest = _mm512_reduce_max_ps(highest);
                if (largest == -INFINITY) {  // every key so far masked: nothing to add
                    std::memset(p, 0, sizeof(uint16_t) * width);
                    continue;
                }
            }
            float ignored;
            const float total = exponentiate(row, p, width, largest, ignored);
            maxima[i] = largest;
            if (reference == -INFINITY) {  // nothing accumulated yet
                sums[i] = total;
                continue;
            }
            const float scale = std::exp(reference - largest);
            sums[i] = sums[i] * scale + total;
            const __m512 factor = _mm512_set1_ps(scale);
            for (int d = 0; d < s.dim_padded; d += 16)
                _mm512_store_ps(acc + i * s.dim_padded + d, _mm512_mul_ps(_mm512_load_ps(acc + i * s.dim_padded + d), factor));
        }
    }

    // acc += probs[:, :width] v[start : start + width].
    void weigh(int start, int width) {
        const int dp = s.dim_padded;
        for (int d = 0; d < dp; d += 32) {
            amx::load_block(acc + d, dp);
            for (int j = 0; j < width; j += 32) {
                const uint16_t *v = values + ((long)(start + j) / 2 * dp + d) * 2;
                amx::multiply_block(probs + j, KEYS * 2, v, v + 32, dp * 4);
            }
            amx::store_block(acc + d, dp);
        }
    }

    // Each row divided by its sum, into out (bf16 bits or float32) at this head's columns.
    void write(void *out, bool bf16, long row_stride, long batch_stride) {
        const int dp = s.dim_padded;
        const __mmask16 tail = (__mmask16)((1u << (s.dim % 16)) - 1);
        for (int i = 0; i < ROWS && first + i < s.queries; ++i) {
            const __m512 inverse = _mm512_set1_ps(1.0f / sums[i]);
            const long at = b * batch_stride + (long)(first + i) * row_stride + (long)h * s.dim;
            for (int d = 0; d < s.dim; d += 16) {
                const __m512 v = _mm512_mul_ps(_mm512_load_ps(acc + i * dp + d), inverse);
                const __mmask16 keep = d + 16 <= s.dim ? (__mmask16)0xFFFF : tail;
                if (bf16)
                    _mm256_mask_storeu_epi16(static_cast<uint16_t *>(out) + at + d, keep, (__m256i)_mm512_cvtneps_pbh(v));
                else
                    _mm512_mask_storeu_ps(static_cast<float *>(out) + at + d, keep, v);
            }
        }
    }
};

}  // namespace

extern "C" {


// softmax(query key^T) value: query [B, Sq, H, D], key and value [B, Sk, H, D], contiguous bf16
// bits, the query already scaled; keep [B, Sk] (1 where a key may be attended to) or null;
// bounds [B, H], bounds on each head's |query . key|, or null;
// out: bf16 bits (out_bf16) or float32, row (query) and batch strides in elements, each head's
// D columns at h * D. Returns 0, or 1 where the shapes are outside what the kernel takes
// (D above 256 or odd) or AMX cannot be used.
int zoo_attention(void *pool, const uint16_t *query, const uint16_t *key, const uint16_t *value,
                  const uint8_t *keep, const float *bounds, void *out, int out_bf16, long out_row_stride, long out_batch_stride,
                  int batch, int queries, int keys, int heads, int dim) {
    if (dim > 256 || dim % 2 || !amx::ready()) return 1;
    const Shapes s{batch, queries, keys, heads, dim, round_up(dim, 32), round_up(keys, 32)};
    auto &threads = *static_cast<threadpool_iface *>(pool);
    std::vector<float> additive((long)batch * s.keys_padded, -INFINITY);
    std::vector<char> masks(batch, 0);
    for (int b = 0; b < batch; ++b)
        for (int n = 0; n < keys; ++n) {
            const bool kept = keep == nullptr || keep[(long)b * keys + n];
            if (kept) additive[(long)b * s.keys_padded + n] = 0.0f;
            masks[b] |= !kept;
        }
    // Heads a group at a time, one per thread: the laid-out keys and values of a group are what is
    // held beside the operands (at 720p, all heads' would be another 1.5 GB).
    const int group = threads.get_num_threads(), blocks = (queries + ROWS - 1) / ROWS;
    const long per_head = (long)s.keys_padded * s.dim_padded / 2;
    Buffer<uint32_t> key_buffer;
    Buffer<uint16_t> value_buffer;
    uint32_t *laid_keys = key_buffer.get(per_head * group);
    uint16_t *laid_values = value_buffer.get(per_head * 2 * group);
    for (int first = 0; first < batch * heads; first += group) {
        const int count = std::min(group, batch * heads - first);
        threads.parallel_for(count, [&](int i, int) {
            lay_out_keys(key, laid_keys + i * per_head, s, (first + i) / heads, (first + i) % heads);
            lay_out_values(value, laid_values + i * per_head * 2, s, (first + i) / heads, (first + i) % heads);
        });
        threads.parallel_for(count * blocks, [&](int i, int) {
            const int slot = i / blocks, head = first + slot, b = head / heads, h = head % heads;
            Task task{s, query, laid_keys + slot * per_head, laid_values + slot * per_head * 2,
                      additive.data() + (long)b * s.keys_padded, masks[b] != 0,
                      bounds != nullptr && bounds[head] <= EXP_SAFE, b, h, (i % blocks) * ROWS};
            amx::configure_tiles();
            task.load_queries();
            for (int start = 0; start < s.keys_padded; start += KEYS) {
                const int width = std::min(KEYS, s.keys_padded - start);
                task.score(start, width);
                task.soften(start, width);
                task.weigh(start, width);
            }
            _tile_release();
            task.write(out, out_bf16, out_row_stride, out_batch_stride);
        });
    }
    return 0;
}

}
