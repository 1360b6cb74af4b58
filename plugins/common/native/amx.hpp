// AMX tile helpers shared by the attention and linear kernels. Included after the including
// file's target pragma (avx512f/bw/vl/dq/bf16, amx-tile, amx-bf16, amx-int8 where int8 products
// are used), which these need.

#pragma once

#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

namespace amx {

struct TileConfig {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

// Every tile 16 rows of 64 bytes: float32 blocks 16 x 16, bf16 rows 16 x 32, and the second
// operand of a product 16 pairs x 16 columns (the VNNI layout the products read).
constexpr TileConfig tile_config() {
    TileConfig config{};
    config.palette = 1;
    for (int t = 0; t < 8; ++t) {
        config.colsb[t] = 64;
        config.rows[t] = 16;
    }
    return config;
}

// The configuration is constant data, not a local filled before the load: GCC 12 can drop a
// local's stores as dead before _tile_loadconfig (seen in a test build, which then faulted on
// the garbage it loaded).
inline void configure_tiles() {
    static constexpr TileConfig config = tile_config();
    _tile_loadconfig(&config);
}

// Tiles 0-3, a 32 x 32 float32 block at `at` (rows `stride` floats apart), from or into memory.
inline void load_block(const float *at, long stride) {
    _tile_loadd(0, at, stride * 4);
    _tile_loadd(1, at + 16, stride * 4);
    _tile_loadd(2, at + 16 * stride, stride * 4);
    _tile_loadd(3, at + 16 * stride + 16, stride * 4);
}

inline void store_block(float *at, long stride) {
    _tile_stored(0, at, stride * 4);
    _tile_stored(1, at + 16, stride * 4);
    _tile_stored(2, at + 16 * stride, stride * 4);
    _tile_stored(3, at + 16 * stride + 16, stride * 4);
}

inline void zero_block() {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
}

// Tiles 0-3 += a (32 rows of 64 bytes, `a_stride` bytes apart) times b (two tiles of 16 rows by
// 16 columns of 4 bytes, the second at `b_right`, rows `b_stride` bytes apart): bf16 pairs into
// float32 sums, or with INT8 signed byte quads into int32 sums.
template <bool INT8 = false>
inline void multiply_block(const void *a, long a_stride, const void *b, const void *b_right, long b_stride) {
    _tile_loadd(4, a, a_stride);
    _tile_loadd(5, static_cast<const char *>(a) + 16 * a_stride, a_stride);
    _tile_loadd(6, b, b_stride);
    _tile_loadd(7, b_right, b_stride);
    if constexpr (INT8) {
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    } else {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
}

// Whether this process may use AMX tiles (Linux asks each process to request them), asked once.
inline bool ready() {
    constexpr long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
    static const bool granted = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    return granted;
}

// exp(x) for x up to 88: 2^n * e^(f ln 2), |f| <= 1/2, a degree-6 Taylor polynomial (relative
// error below 2e-7); exactly 0 below -87 (masked keys are -inf).
inline __m512 exp_bounded(__m512 x) {
    const __m512 t = _mm512_mul_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(1.44269504f));
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 y = _mm512_mul_ps(_mm512_sub_ps(t, n), _mm512_set1_ps(0.693147181f));
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f));
    const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
    return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, n));
}

}  // namespace amx
