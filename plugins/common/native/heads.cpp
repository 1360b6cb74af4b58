// Queries and keys made ready for the attention kernel in one pass over each head: RMS norm
// (with its weight), a scale, the rotary embedding, rounding to bf16, and each head's largest
// row norm (which bounds the scores, see onednn.attention). The same arithmetic as the oneDNN
// norm, numpy rotation and oneDNN reorder it replaces, without their three passes over memory.

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

// After the standard headers: the code they share with other files stays generic.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")

#include "pool.hpp"

namespace {

inline __mmask16 lanes(int d, int dim) { return d + 16 <= dim ? (__mmask16)0xFFFF : (__mmask16)((1u << (dim - d)) - 1); }

}  // namespace

extern "C" {

// For rows [0, rows) of src (float32, row stride src_stride elements) and each head h of dim
// columns at h * dim: x = src row's head; with weight, x = x / sqrt(mean(x^2) + eps) * weight;
// x *= scale; with cos/sin (rows of table_stride, the pair signs in sin as attention.apply_rope
// takes them), x = x * cos + pairs_swapped(x) * sin; dst (bf16 bits, row stride dst_stride) = x
// rounded to nearest even; maxima[h] = max(maxima[h], |x|). dim must be even.
void zoo_prepare_heads(void *pool, const float *src, long src_stride, int rows, int heads, int dim,
                       const float *weight, float eps, float scale, const float *cos, const float *sin,
                       long table_stride, uint16_t *dst, long dst_stride, float *maxima) {
    auto &threads = *static_cast<threadpool_iface *>(pool);
    const int parts = std::max(1, std::min(threads.get_num_threads(), rows));
    std::mutex merge;
    threads.parallel_for(parts, [&](int part, int count) {
        std::vector<float> highest(heads, 0.0f);
        for (long r = (long)rows * part / count; r < (long)rows * (part + 1) / count; ++r) {
            for (int h = 0; h < heads; ++h) {
                const float *x = src + r * src_stride + (long)h * dim;
                float factor = scale;
                if (weight != nullptr) {
                    __m512 squares = _mm512_setzero_ps();
                    for (int d = 0; d < dim; d += 16) {
                        const __m512 v = _mm512_maskz_loadu_ps(lanes(d, dim), x + d);
                        squares = _mm512_fmadd_ps(v, v, squares);
                    }
                    factor /= std::sqrt(_mm512_reduce_add_ps(squares) / dim + eps);
                }
                __m512 norm = _mm512_setzero_ps();
                for (int d = 0; d < dim; d += 16) {
                    const __mmask16 m = lanes(d, dim);
                    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + d), _mm512_set1_ps(factor));
                    if (weight != nullptr) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, weight + d));
                    if (cos != nullptr) {
                        const __m512 swapped = _mm512_permute_ps(v, 0xB1);  // (x1, x0, x3, x2, ...)
                        v = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(m, cos + r * table_stride + d),
                                            _mm512_mul_ps(swapped, _mm512_maskz_loadu_ps(m, sin + r * table_stride + d)));
                    }
                    norm = _mm512_fmadd_ps(v, v, norm);
                    _mm256_mask_storeu_epi16(dst + r * dst_stride + (long)h * dim + d, m, (__m256i)_mm512_cvtneps_pbh(v));
                }
                highest[h] = std::max(highest[h], std::sqrt(_mm512_reduce_add_ps(norm)));
            }
        }
        std::lock_guard<std::mutex> lock(merge);
        for (int h = 0; h < heads; ++h) maxima[h] = std::max(maxima[h], highest[h]);
    });
}

}
