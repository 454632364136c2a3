#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
// RLOSS_PORTABLE_ONLY builds only the code every compiler and CPU gets (no
// AVX2 paths): a test compiles the lattice so as well, to check that path on
// machines that would never run it.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(RLOSS_PORTABLE_ONLY)
#include <immintrin.h>
#define RLOSS_HAVE_AVX2 1
// The hot loops are compiled twice: for x86-64-v3 CPUs (AVX2 and FMA; clang,
// which cannot test for that level, gets AVX2 and FMA only) in 8-lane vectors,
// as functions named ...V3, and for the baseline ISA in 4-lane ones (see
// Vec). Each call picks one for the CPU it runs on.
#define RLOSS_HAVE_V3 1
#ifdef __clang__
#define RLOSS_V3 __attribute__((target("avx2,fma")))
#else
#define RLOSS_V3 __attribute__((target("arch=x86-64-v3")))
#endif
#endif

#include "caffe/util/permutohedral.hpp"

// Helpers of the V3 functions must be inlined into them: an out-of-line copy
// would be compiled for the baseline ISA only.
#ifdef __GNUC__
#define RLOSS_INLINE inline __attribute__((always_inline))
#else
#define RLOSS_INLINE inline
#endif
// GCC and clang note that a vector passed by value has another ABI without
// AVX; the 8-lane helpers that do so are internal and inlined, so no call
// crosses it. (Clang refuses such a call made directly from an AVX2
// function: the V3 functions call templates that take pointers, and
// StoreRow takes a reference under clang.)
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace caffe {

namespace {

const int kBlock = 16;       // points per structure-of-arrays build block
static_assert(kBlock <= 32, "a block's pending points are bits of an int");
const int kTile = 64;        // points per transpose tile in splat and slice
const int kLanes = 8;        // vertex rows are padded to whole AVX vectors
const int kChunkPoints = 16384;  // points per splat chunk (at most kChunks)
const int kChunks = 4;
const int kAhead = 2;        // tiles ahead whose planes are prefetched

inline bool Nested() {
#ifdef _OPENMP
  return omp_in_parallel();
#else
  return true;
#endif
}

inline int Threads() {
#ifdef _OPENMP
  return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

inline int ThreadId() {
#ifdef _OPENMP
  return omp_in_parallel() ? omp_get_thread_num() : 0;
#else
  return 0;
#endif
}

// Keys hash linearly, h = sum_i key_i * KeyFactor(i) (mod 2^32), so that the
// hash of a vertex follows from its cell's, and a neighbour's from the
// vertex's, by adding constants. The factors are fixed pseudo-random odd
// numbers (a murmur finaliser of i), so small key differences do not cancel.
inline unsigned int Mix(unsigned int h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  return h ^ (h >> 16);
}

inline unsigned int KeyFactor(int i) {
  return Mix(0x9e3779b9u * static_cast<unsigned int>(i + 1)) | 1u;
}

// Multiplicative hashing: the top bits of h * kHomeFactor, which depend on
// all of h, name a hash's home slot. One multiply where Mix has two.
const unsigned int kHomeFactor = 0x9e3779b1u;
inline unsigned int Home(unsigned int h, int shift) {
  return (h * kHomeFactor) >> shift;
}

inline unsigned int HashKey(const int* key, int dim) {
  unsigned int h = 0;
  for (int i = 0; i < dim; ++i) {
    h += static_cast<unsigned int>(key[i]) * KeyFactor(i);
  }
  return h;
}

// A cell's tag, its hash in the cell table: its dim coordinates / (d+1),
// less base, packed in bits each where they fit, so that equal tags are equal
// keys and a lookup need not read the key; else its hash with bit 31 set.
struct CellPacking {
  int bits;  // dim * bits <= 31
  int* base;  // dim offsets, about the first cell's coordinates
  unsigned int Tag(const int* cell, int dim, unsigned int hash) const {
    unsigned int tag = 0;
    int out = 0;
    for (int i = 0; i < dim; ++i) {
      const int q = cell[i] / (dim + 1) - base[i];
      out |= q & -(1 << bits);
      tag |= static_cast<unsigned int>(q) << (bits * i);
    }
    return out == 0 ? tag : hash | 0x80000000u;
  }
};

// Vectors of kW floats or ints: 8 where the hot loops run AVX2 (the V3
// functions), 4 in the portable ones, one SSE or NEON register. GCC
// keeps such a vector in a register, but splits an 8-lane one on those ISAs
// through the stack (its portable path took 4x clang's time so).
template <int kW>
struct Vec {
  typedef float F __attribute__((vector_size(4 * kW)));
  typedef int I __attribute__((vector_size(4 * kW)));
};
typedef Vec<8>::F Float8;
typedef Vec<8>::I Int8;
const int kPortableLanes = 4;

// memcpy is the portable unaligned vector load and store; caffe_copy would
// tie the lattice to Caffe.
template <typename V, typename T>
RLOSS_INLINE V LoadV(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(v));  // NOLINT(caffe/alt_fn)
  return v;
}

template <typename T, typename V>
RLOSS_INLINE void StoreV(T* p, V v) {
  std::memcpy(p, &v, sizeof(v));  // NOLINT(caffe/alt_fn)
}

// 0, 1, ..., kW - 1.
template <int kW>
RLOSS_INLINE typename Vec<kW>::I Iota() {
  static const int kIota[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  return LoadV<typename Vec<kW>::I>(kIota);
}

// Stores the first d1 <= 8 lanes of v at p: as one vector store where wide
// (the lanes past d1 land on memory the caller overwrites next), else only
// those lanes. v is a copy for GCC, which stores the build's rows faster
// from one; clang will not pass a vector by value from an AVX2 function
// (LookupBlock) to this one.
template <typename T, typename V>
#ifdef __clang__
RLOSS_INLINE void StoreRow(T* p, const V& v, int d1, bool wide) {
#else
RLOSS_INLINE void StoreRow(T* p, V v, int d1, bool wide) {
#endif
  if (wide) {
    std::memcpy(p, &v, sizeof(v));  // NOLINT(caffe/alt_fn)
  } else {
    std::memcpy(p, &v, d1 * sizeof(T));  // NOLINT(caffe/alt_fn)
  }
}

// Lanes of a and b (0-7 a's, 8-15 b's), in the order named. GCC takes the
// order as a vector, clang as constant arguments.
template <int i0, int i1, int i2, int i3, int i4, int i5, int i6, int i7>
RLOSS_INLINE Float8 Shuffle(Float8 a, Float8 b) {
#ifdef __clang__
  return __builtin_shufflevector(a, b, i0, i1, i2, i3, i4, i5, i6, i7);
#else
  const Int8 order = {i0, i1, i2, i3, i4, i5, i6, i7};
  return __builtin_shuffle(a, b, order);
#endif
}

// The same for 4 lanes (0-3 a's, 4-7 b's).
template <int i0, int i1, int i2, int i3>
RLOSS_INLINE Vec<4>::F Shuffle(Vec<4>::F a, Vec<4>::F b) {
#ifdef __clang__
  return __builtin_shufflevector(a, b, i0, i1, i2, i3);
#else
  const Vec<4>::I order = {i0, i1, i2, i3};
  return __builtin_shuffle(a, b, order);
#endif
}

// Transposes a square block of kW vectors in registers: unpack, shuffle,
// then for 8 lanes swap halves.
RLOSS_INLINE void Transpose(Float8 r[8]) {
  Float8 a[8], b[8];
  for (int i = 0; i < 8; i += 2) {
    a[i] = Shuffle<0, 8, 1, 9, 4, 12, 5, 13>(r[i], r[i + 1]);
    a[i + 1] = Shuffle<2, 10, 3, 11, 6, 14, 7, 15>(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    b[i] = Shuffle<0, 1, 8, 9, 4, 5, 12, 13>(a[i], a[i + 2]);
    b[i + 1] = Shuffle<2, 3, 10, 11, 6, 7, 14, 15>(a[i], a[i + 2]);
    b[i + 2] = Shuffle<0, 1, 8, 9, 4, 5, 12, 13>(a[i + 1], a[i + 3]);
    b[i + 3] = Shuffle<2, 3, 10, 11, 6, 7, 14, 15>(a[i + 1], a[i + 3]);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = Shuffle<0, 1, 2, 3, 8, 9, 10, 11>(b[i], b[i + 4]);
    r[i + 4] = Shuffle<4, 5, 6, 7, 12, 13, 14, 15>(b[i], b[i + 4]);
  }
}

RLOSS_INLINE void Transpose(Vec<4>::F r[4]) {
  const Vec<4>::F a0 = Shuffle<0, 4, 1, 5>(r[0], r[1]);
  const Vec<4>::F a1 = Shuffle<2, 6, 3, 7>(r[0], r[1]);
  const Vec<4>::F a2 = Shuffle<0, 4, 1, 5>(r[2], r[3]);
  const Vec<4>::F a3 = Shuffle<2, 6, 3, 7>(r[2], r[3]);
  r[0] = Shuffle<0, 1, 4, 5>(a0, a2);
  r[1] = Shuffle<2, 3, 6, 7>(a0, a2);
  r[2] = Shuffle<0, 1, 4, 5>(a1, a3);
  r[3] = Shuffle<2, 3, 6, 7>(a1, a3);
}

}  // namespace

// Point features: dim planes of features (width 0), or the bilateral
// features of a planar C x H x W image, made as they are read
// (no feature buffer written and read back). Divisions, not multiplications
// by 1/sigma, so that the features are the published layer's to the bit.
struct PermutohedralLattice::FeatureSource {
  const float* planes;  // the features, or the image's C planes
  size_t plane;         // floats per plane
  int width;            // 0: planar features; else the image's width
  float sigma_xy, sigma_rgb;

  // out[b] = feature i of point first + b, b < n.
  void Copy(int i, size_t first, int n, float* out) const {
    if (width == 0) {
      const float* in = planes + i * plane + first;
      std::copy(in, in + n, out);
      return;
    }
    if (i >= 2) {
      const float* in = planes + (i - 2) * plane + first;
      for (int b = 0; b < n; ++b) out[b] = in[b] / sigma_rgb;
      return;
    }
    int y = static_cast<int>(first / width);
    int x = static_cast<int>(first - static_cast<size_t>(y) * width);
    for (int b = 0; b < n; ++b) {
      out[b] = (i == 0 ? x : y) / sigma_xy;
      if (++x == width) {
        x = 0;
        ++y;
      }
    }
  }

  // Features 0 .. dim-1 of points first .. first + kW - 1, all in range.
  template <int kDim, int kW>
  RLOSS_INLINE void Load(size_t first, typename Vec<kW>::F f[kDim]) const {
    typedef typename Vec<kW>::F F;
    if (width == 0) {
      for (int i = 0; i < kDim; ++i) {
        f[i] = LoadV<F>(planes + i * plane + first);
      }
      return;
    }
    const int y = static_cast<int>(first / width);
    const int x = static_cast<int>(first - static_cast<size_t>(y) * width);
    if (x + kW <= width) {  // one row
      f[0] = __builtin_convertvector(Iota<kW>() + x, F) / sigma_xy;
      f[1] = F() + y / sigma_xy;
    } else {
      float xs[kW], ys[kW];  // the row wraps
      Copy(0, first, kW, xs);
      Copy(1, first, kW, ys);
      f[0] = LoadV<F>(xs);
      f[1] = LoadV<F>(ys);
    }
    for (int i = 2; i < kDim; ++i) {
      f[i] = LoadV<F>(planes + (i - 2) * plane + first) / sigma_rgb;
    }
  }
};

namespace {

typedef PermutohedralLattice::FeatureSource FeatureSource;

// Elevates a block of n <= kBlock points onto the hyperplane sum(x) = 0 of
// R^{d+1} and finds each one's enclosing simplex: its remainder-0 vertex,
// the rank of each coordinate and the barycentric weights (written to weight,
// d+1 per point). Arrays are coordinate-major ([i * kBlock + b]) and all float
// (ranks are small whole numbers) so that the loops over b vectorise; lanes
// b >= n are padding. elevated, rank and bary are left holding scratch.
RLOSS_INLINE void SimplexBlockAny(const FeatureSource& features,
    size_t start, int dim, int n, const float* scale, float* elevated,
    float* rem0, float* rank, float* bary, int* mask, float* weight) {
  const int d1 = dim + 1;
  const float down = 1.0f / d1;
  // elevated[j] = sum_{i >= j} cf_i - j cf_{j-1}, cf_i = f_i * scale_i.
  // The block's features are first copied into bary's space.
  float* f = bary;
  for (int j = 0; j < dim; ++j) features.Copy(j, start, n, f + j * kBlock);
  for (int j = 0; j < dim; ++j) {
    for (int b = n; b < kBlock; ++b) f[j * kBlock + b] = 0;
  }
  float sum_scaled[kBlock] = {0};
  for (int j = dim; j > 0; --j) {
    const float* fj = f + (j - 1) * kBlock;
    const float sj = scale[j - 1];
    float* e = elevated + j * kBlock;
#pragma omp simd
    for (int b = 0; b < kBlock; ++b) {
      const float cf = fj[b] * sj;
      e[b] = sum_scaled[b] - j * cf;
      sum_scaled[b] += cf;
    }
  }
  float coord_sum[kBlock] = {0};
#pragma omp simd
  for (int b = 0; b < kBlock; ++b) elevated[b] = sum_scaled[b];
  // Nearest remainder-0 point (coordinates multiples of d+1; ties go down).
  for (int i = 0; i < d1; ++i) {
#pragma omp simd
    for (int b = 0; b < kBlock; ++b) {
      const float r = std::ceil(elevated[i * kBlock + b] * down - 0.5f);
      rem0[i * kBlock + b] = r * d1;
      coord_sum[b] += r;
      rank[i * kBlock + b] = 0;
    }
  }
  // Rank the residuals to find the enclosing simplex.
  for (int i = 0; i < dim; ++i) {
    for (int j = i + 1; j < d1; ++j) {
#pragma omp simd
      for (int b = 0; b < kBlock; ++b) {
        const float less = (elevated[i * kBlock + b] - rem0[i * kBlock + b]) <
            (elevated[j * kBlock + b] - rem0[j * kBlock + b]) ? 1.0f : 0.0f;
        rank[i * kBlock + b] += less;
        rank[j * kBlock + b] += 1.0f - less;
      }
    }
  }
  // Bring the rounded point back onto the hyperplane.
  for (int i = 0; i < d1; ++i) {
#pragma omp simd
    for (int b = 0; b < kBlock; ++b) {
      const float r = rank[i * kBlock + b] + coord_sum[b];
      const float shift = (r < 0 ? 1.0f : 0.0f) - (r > dim ? 1.0f : 0.0f);
      rank[i * kBlock + b] = r + shift * d1;
      rem0[i * kBlock + b] += shift * d1;
    }
  }
  // Barycentric weights. With v_i the residual / (d+1) and u_j the v of
  // the coordinate ranked dim - j: bary_j = u_j - u_{j-1}, bary_0 = 1 + u_0
  // - u_dim. Rank tests are integer compares (float ones would not be
  // if-converted). Also each vertex r's mask: the coordinates ranked >= d1-r.
  for (int i = 0; i < d1; ++i) {
#pragma omp simd
    for (int b = 0; b < kBlock; ++b) {
      elevated[i * kBlock + b] =
          (elevated[i * kBlock + b] - rem0[i * kBlock + b]) * down;
    }
  }
  for (int j = 0; j < d1; ++j) {
    float* u = bary + j * kBlock;
    int* m = mask + j * kBlock;
#pragma omp simd
    for (int b = 0; b < kBlock; ++b) {
      u[b] = 0;
      m[b] = 0;
    }
    for (int i = 0; i < d1; ++i) {
      const float* v = elevated + i * kBlock;
      const float* r = rank + i * kBlock;
#pragma omp simd
      for (int b = 0; b < kBlock; ++b) {
        const int ri = static_cast<int>(r[b]);
        u[b] += ri == dim - j ? v[b] : 0.0f;
        m[b] |= (ri >= d1 - j) << i;
      }
    }
  }
  float first[kBlock];
#pragma omp simd
  for (int b = 0; b < kBlock; ++b) {
    first[b] = 1.0f + bary[b] - bary[dim * kBlock + b];
  }
  for (int j = dim; j > 0; --j) {
#pragma omp simd
    for (int b = 0; b < kBlock; ++b) {
      bary[j * kBlock + b] -= bary[(j - 1) * kBlock + b];
    }
  }
#pragma omp simd
  for (int b = 0; b < kBlock; ++b) bary[b] = first[b];
  for (int b = 0; b < n; ++b) {
    for (int j = 0; j < d1; ++j) weight[b * d1 + j] = bary[j * kBlock + b];
  }
}

// Puts a and b in ascending order, lane by lane: a compare and two blends
// (GCC does not turn the selects into min and max), on any ISA.
struct BlendOrder {
  template <typename F>
  static RLOSS_INLINE void MinMax(F* a, F* b) {
    const F lo = *a < *b ? *a : *b, hi = *a < *b ? *b : *a;
    *a = lo;
    *b = hi;
  }
};

#if defined(RLOSS_HAVE_V3) && !defined(__clang__)
// The same with vminps and vmaxps, one instruction each: min(a, b) is
// a < b ? a : b and max(b, a) is a < b ? b : a, so the bits are BlendOrder's.
// For AVX2 callers only. Inline assembly, since an intrinsic would need the
// AVX target on every function it is inlined through, and those are shared
// with the baseline build.
struct MinMaxOrder {
  static RLOSS_INLINE void MinMax(Float8* a, Float8* b) {
    Float8 lo, hi;
    // AT&T operand order: "vminps y, x, out" is out = x < y ? x : y.
    __asm__("vminps %2, %1, %0" : "=x"(lo) : "x"(*a), "x"(*b));
    __asm__("vmaxps %2, %1, %0" : "=x"(hi) : "x"(*b), "x"(*a));
    *a = lo;
    *b = hi;
  }
};
typedef MinMaxOrder V3Order;
#elif defined(RLOSS_HAVE_V3)
// Clang makes vminps and vmaxps of BlendOrder's selects itself (and rejects
// 8-lane "x" operands in a function without AVX).
typedef BlendOrder V3Order;
#endif

// Sorts n vectors lane by lane, ascending: for n = 6 the 12-comparator
// network, else odd-even transposition (n rounds).
template <int n, typename Order, typename F>
RLOSS_INLINE void SortAscending(F x[]) {
  if (n == 6) {
    static const int pair[12][2] = {{0, 5}, {1, 3}, {2, 4}, {1, 2}, {3, 4},
        {0, 3}, {2, 5}, {0, 1}, {2, 3}, {4, 5}, {1, 2}, {3, 4}};
    for (int c = 0; c < 12; ++c) {
      Order::MinMax(&x[pair[c][0]], &x[pair[c][1]]);
    }
    return;
  }
  for (int round = 0; round < n; ++round) {
    for (int i = round % 2; i + 1 < n; i += 2) Order::MinMax(&x[i], &x[i + 1]);
  }
}

// SimplexBlockAny for a dimension known at compile time, kW points at a time
// in registers: the same arithmetic, written on vectors so that nothing
// round-trips through memory. elevated and rank are not used. Order sorts
// (BlendOrder or MinMaxOrder).
template <int kDim, typename Order, int kW>
RLOSS_INLINE void SimplexBlockFixed(const FeatureSource& features,
    size_t start, int n, int wide, const float* scale, float* rem0_out,
    float* weight, int* mask_out) {
  typedef typename Vec<kW>::F F;
  typedef typename Vec<kW>::I I;
  const int d1 = kDim + 1;
  static_assert(d1 <= 8, "a point's weights fill at most 8 lanes");
  // The weights are transposed in blocks of kW x kW: kRows rows of them.
  const int kRows = (d1 + kW - 1) / kW * kW;
  const float down = 1.0f / d1;
  const I zero = I(), one = zero + 1;
  for (int b0 = 0; b0 < kBlock; b0 += kW) {
    const int m = std::min(kW, n - b0);
    if (m <= 0) break;  // lanes past n are only read in whole groups
    F f[kDim];
    if (m == kW) {
      features.Load<kDim, kW>(start + b0, f);
    } else {  // the block's last points, zero-padded
      float padded[kW] = {0};
      for (int i = 0; i < kDim; ++i) {
        features.Copy(i, start + b0, m, padded);
        f[i] = LoadV<F>(padded);
      }
    }
    F elevated[kDim + 1];
    F sum = F();
    for (int j = kDim; j > 0; --j) {
      const int i = j - 1;
      const F cf = f[i] * scale[i];
      elevated[j] = sum - static_cast<float>(j) * cf;
      sum += cf;
    }
    elevated[0] = sum;
    // Nearest remainder-0 point: ceil(e / d1 - 1/2), ties down. Only the
    // residuals e - rem0 are kept in registers (there are too few for more).
    I coord_sum = zero;
    F resid[kDim + 1];
    for (int i = 0; i < d1; ++i) {
      const F y = elevated[i] * down - 0.5f;
      F r = __builtin_convertvector(__builtin_convertvector(y, I), F);
      r = r < y ? r + 1.0f : r;
      resid[i] = elevated[i] - r * static_cast<float>(d1);
      StoreV(rem0_out + i * kBlock + b0, r * static_cast<float>(d1));
      coord_sum += __builtin_convertvector(r, I);
    }
    // rank_i counts the coordinates ahead of i: larger residuals, and equal
    // ones of lower index. rank_j starts at j, the count if every earlier
    // one were ahead of it; less (-1 where true) moves one back.
    I rank[kDim + 1];
    for (int i = 0; i < d1; ++i) rank[i] = zero + i;
    for (int i = 0; i < kDim; ++i) {
      for (int j = i + 1; j < d1; ++j) {
        const I less = resid[i] < resid[j];
        rank[i] -= less;
        rank[j] += less;
      }
    }
    // Bring the rounded point back onto the hyperplane. Vertex r's mask holds
    // the coordinates ranked above dim - r; enter has coordinate i's bit in
    // field dim - rank_i, d1 bits a field, so that mask r is the OR of fields
    // 0 .. r - 1. (Rank 0's field, the last, is never read: its bits may
    // fall off the top.)
    static_assert(kDim * d1 <= 32, "the fields read fit in an int");
    I enter = zero;
    for (int i = 0; i < d1; ++i) {
      const I r = rank[i] + coord_sum;
      const I shift = (r > kDim) - (r < 0);  // +1 below 0, -1 above dim
      const I ri = r + shift * d1;
      const F step = __builtin_convertvector(shift * d1, F);
      resid[i] = (resid[i] - step) * down;  // now v_i of SimplexBlockAny
      const F cell = LoadV<F>(rem0_out + i * kBlock + b0) + step;
      StoreV(rem0_out + i * kBlock + b0, cell);
      enter |= (one << i) << ((kDim - ri) * d1);  // per-lane shift
    }
    I mask = zero;
    for (int j = 0; j < d1; ++j) {
      StoreV(mask_out + j * kBlock + b0, mask);
      if (j < kDim) mask |= (enter >> (d1 * j)) & ((1 << d1) - 1);
    }
    // u_j is the v ranked dim - j: the v in ascending order. A sorting
    // network of min/max gives them (equal values are the same bits, so
    // the order among ties does not matter here).
    F u[kDim + 1];
    for (int i = 0; i < d1; ++i) u[i] = resid[i];
    SortAscending<d1, Order>(u);
    F w[kRows] = {};  // rows d1.. stay 0; their columns are not stored
    w[0] = 1.0f + u[0] - u[kDim];
    for (int j = 1; j < d1; ++j) w[j] = u[j] - u[j - 1];
    for (int c = 0; c < kRows; c += kW) Transpose(w + c);
    // Point b's weights c.. are row b of block c: stored in block order,
    // so that a row's lanes past d1 land where the next store writes.
    for (int b = 0; b < m; ++b) {
      for (int c = 0; c < d1; c += kW) {
        StoreRow(weight + (b0 + b) * d1 + c, w[c + b], std::min(kW, d1 - c),
                 b0 + b < wide);
      }
    }
  }
}

// Whether the CPU runs the V3 functions.
#ifdef RLOSS_HAVE_V3
inline bool CpuIsV3() {
#ifdef __clang__
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return __builtin_cpu_supports("x86-64-v3");
#endif
}

// The simplex search of a block on x86-64-v3: for five features (x, y and
// RGB, the common case) unrolled, 8 points a vector, sorting with V3Order.
RLOSS_V3 void SimplexBlockV3(const FeatureSource& features, size_t start,
    int dim, int n, int wide, const float* scale, float* elevated, float* rem0,
    float* rank, float* bary, int* mask, float* weight) {
  if (dim == 5) {
    SimplexBlockFixed<5, V3Order, 8>(features, start, n, wide, scale, rem0,
                                     weight, mask);
  } else {
    SimplexBlockAny(features, start, dim, n, scale, elevated, rem0, rank, bary,
                    mask, weight);
  }
}
#else
inline bool CpuIsV3() { return false; }
#endif

// The same in the portable path (SimplexBlockV3 where v3).
void SimplexBlock(const FeatureSource& features, size_t start, int dim,
    int n, int wide, const float* scale, float* elevated, float* rem0,
    float* rank, float* bary, int* mask, float* weight, bool v3) {
#ifdef RLOSS_HAVE_V3
  if (v3) {
    SimplexBlockV3(features, start, dim, n, wide, scale, elevated, rem0, rank,
                   bary, mask, weight);
    return;
  }
#endif
  if (dim == 5) {
    SimplexBlockFixed<5, BlendOrder, kPortableLanes>(features, start, n,
        wide, scale, rem0, weight, mask);
  } else {
    SimplexBlockAny(features, start, dim, n, scale, elevated, rem0, rank, bary,
                    mask, weight);
  }
}

// tile[t * stride + k] = in[k * plane + t] * point_weight[t] for nt points,
// zero for k in [vs, stride): planar values to interleaved rows, in kW x kW
// blocks. kW planes at a time: where the plane size is near a multiple of
// 4 KiB all planes map to the same L1 sets, and more streams than the cache
// has ways would evict each other.
template <int kW>
RLOSS_INLINE void GatherRows(const float* in, size_t plane, int vs, int nt,
    const float* point_weight, int stride, float* tile) {
  typedef typename Vec<kW>::F F;
  const int whole = nt / kW * kW;
  for (int k0 = 0; k0 < stride; k0 += kW) {
    const int planes = std::max(0, std::min(kW, vs - k0));
    for (int t0 = 0; t0 < whole; t0 += kW) {
      F w = F() + 1.0f;
      if (point_weight) w = LoadV<F>(point_weight + t0);
      F r[kW];
      for (int i = 0; i < kW; ++i) {
        r[i] = i < planes ? LoadV<F>(in + (k0 + i) * plane + t0) * w : F();
      }
      Transpose(r);
      for (int i = 0; i < kW; ++i) StoreV(tile + (t0 + i) * stride + k0, r[i]);
    }
  }
  for (int t = whole; t < nt; ++t) {
    const float w = point_weight ? point_weight[t] : 1.0f;
    for (int k = 0; k < stride; ++k) {
      tile[t * stride + k] = k < vs ? in[k * plane + t] * w : 0.0f;
    }
  }
}

#ifdef RLOSS_HAVE_V3
RLOSS_V3 void GatherTileV3(const float* in, size_t plane, int vs, int nt,
    const float* point_weight, int stride, float* tile) {
  GatherRows<8>(in, plane, vs, nt, point_weight, stride, tile);
}
#endif

// GatherRows in the portable path's lanes (GatherTileV3 where v3).
void GatherTile(const float* in, size_t plane, int vs, int nt,
    const float* point_weight, int stride, float* tile, bool v3) {
#ifdef RLOSS_HAVE_V3
  if (v3) return GatherTileV3(in, plane, vs, nt, point_weight, stride, tile);
#endif
  GatherRows<kPortableLanes>(in, plane, vs, nt, point_weight, stride, tile);
}

// out[k * plane + t] = scale * point_weight[t] * tile[t * stride + k]:
// interleaved rows back to planar values, kW planes at a time as in
// GatherRows.
template <int kW>
RLOSS_INLINE void ScatterRows(const float* tile, int nt, int vs, int stride,
    float scale, const float* point_weight, size_t plane, float* out) {
  typedef typename Vec<kW>::F F;
  const int whole = nt / kW * kW;
  for (int k0 = 0; k0 < vs; k0 += kW) {
    const int planes = std::min(kW, vs - k0);
    for (int t0 = 0; t0 < whole; t0 += kW) {
      F w = F() + scale;
      if (point_weight) w *= LoadV<F>(point_weight + t0);
      F r[kW];
      for (int i = 0; i < kW; ++i) {
        r[i] = LoadV<F>(tile + (t0 + i) * stride + k0);
      }
      Transpose(r);
      for (int i = 0; i < planes; ++i) {
        StoreV(out + (k0 + i) * plane + t0, r[i] * w);
      }
    }
  }
  for (int t = whole; t < nt; ++t) {
    const float w = point_weight ? scale * point_weight[t] : scale;
    for (int k = 0; k < vs; ++k) out[k * plane + t] = w * tile[t * stride + k];
  }
}

#ifdef RLOSS_HAVE_V3
RLOSS_V3 void ScatterTileV3(const float* tile, int nt, int vs, int stride,
    float scale, const float* point_weight, size_t plane, float* out) {
  ScatterRows<8>(tile, nt, vs, stride, scale, point_weight, plane, out);
}
#endif

void ScatterTile(const float* tile, int nt, int vs, int stride,
    float scale, const float* point_weight, size_t plane, float* out,
    bool v3) {
#ifdef RLOSS_HAVE_V3
  if (v3) {
    return ScatterTileV3(tile, nt, vs, stride, scale, point_weight, plane,
                         out);
  }
#endif
  ScatterRows<kPortableLanes>(tile, nt, vs, stride, scale, point_weight,
                              plane, out);
}

// The cache lines of a later tile's planes (vs planes of kTile floats; too
// many streams for the hardware prefetcher), prefetched a few at a time from
// inside the splat's or slice's point loop, so that streaming S in and the
// gradient out overlaps their arithmetic. Issued in one burst per tile, they
// filled the miss queue and the transposes waited on memory.
struct TilePrefetch {
  static const int kLinesPerPlane = kTile * sizeof(float) / 64;
  const char* base;  // the tile's first plane; NULL: nothing to prefetch
  size_t plane;      // bytes between planes
  int lines;         // vs * kLinesPerPlane
  int next;          // the next line to prefetch
  int per;           // lines per call of Issue (every 4 points)

  TilePrefetch(const float* tile_ahead, size_t plane_floats, int vs,
               int visits)
      : base(reinterpret_cast<const char*>(tile_ahead)),
        plane(plane_floats * sizeof(float)), lines(vs * kLinesPerPlane),
        next(0), per((4 * lines + visits - 1) / std::max(1, visits)) {}

  template <int kWrite>
  RLOSS_INLINE void Issue() {
    if (base == NULL) return;
    for (int end = std::min(lines, next + per); next < end; ++next) {
      __builtin_prefetch(base + (next / kLinesPerPlane) * plane +
                         (next % kLinesPerPlane) * 64, kWrite);
    }
  }
};

// acc[vertex rows] += weight * tile[t] for n points of one tile, channels
// [k0, k0 + kFloats), in vectors of kW lanes: each point's values stay in
// registers over its vertices. kD1 > 0 fixes the vertices per point,
// kStride > 0 the row stride, at compile time (0: d1, stride).
template <int kW, int kFloats, int kD1, int kStride>
struct SplatColumns {
  static RLOSS_INLINE void Run(const float* tile, int n, int dyn_d1,
      int dyn_stride, int k0, const int* vertex, const float* weight,
      float* acc, TilePrefetch* ahead) {
    typedef typename Vec<kW>::F F;
    const int V = kFloats / kW;
    const int d1 = kD1 ? kD1 : dyn_d1;
    const int stride = kStride ? kStride : dyn_stride;
    for (int t = 0; t < n; ++t) {
      if (t % 4 == 0) ahead->Issue<0>();
      F x[V];
      for (int j = 0; j < V; ++j) {
        x[j] = LoadV<F>(tile + t * stride + k0 + kW * j);
      }
      const int* v = vertex + t * d1;
      const float* w = weight + t * d1;
      for (int r = 0; r < d1; ++r) {
        float* row = acc + static_cast<size_t>(v[r]) * stride + k0;
        const float wr = w[r];
        for (int j = 0; j < V; ++j) {
          StoreV(row + kW * j, LoadV<F>(row + kW * j) + wr * x[j]);
        }
      }
    }
  }
};

// tile[t] = sum_r weight * values[vertex rows] for n points of one tile,
// channels [k0, k0 + kFloats), with an accumulator per vector of a point.
template <int kW, int kFloats, int kD1, int kStride>
struct SliceColumns {
  static RLOSS_INLINE void Run(const float* values, int n, int dyn_d1,
      int dyn_stride, int k0, const int* vertex, const float* weight,
      float* tile, TilePrefetch* ahead) {
    typedef typename Vec<kW>::F F;
    const int V = kFloats / kW;
    const int d1 = kD1 ? kD1 : dyn_d1;
    const int stride = kStride ? kStride : dyn_stride;
    for (int t = 0; t < n; ++t) {
      if (t % 4 == 0) ahead->Issue<1>();
      const int* v = vertex + t * d1;
      const float* w = weight + t * d1;
      F acc[V];
      for (int j = 0; j < V; ++j) acc[j] = F();
      for (int r = 0; r < d1; ++r) {
        const float* row = values + static_cast<size_t>(v[r]) * stride + k0;
        const float wr = w[r];
        for (int j = 0; j < V; ++j) acc[j] += wr * LoadV<F>(row + kW * j);
      }
      for (int j = 0; j < V; ++j) {
        StoreV(tile + t * stride + k0 + kW * j, acc[j]);
      }
    }
  }
};

// One pass of Columns over channels [k0, k0 + kFloats); a row of one pass
// gets its stride at compile time.
template <template <int, int, int, int> class Columns, int kW, int kD1,
          int kFloats>
RLOSS_INLINE void Pass(const float* in, int n, int d1, int stride, int k0,
    const int* vertex, const float* weight, float* out, TilePrefetch* ahead) {
  if (stride == kFloats) {
    Columns<kW, kFloats, kD1, kFloats>::Run(in, n, d1, stride, k0, vertex,
                                            weight, out, ahead);
  } else {
    Columns<kW, kFloats, kD1, 0>::Run(in, n, d1, stride, k0, vertex, weight,
                                      out, ahead);
  }
}

// Runs Columns over the row's channels, up to 32 at a time; the prefetches
// of ahead are spread over all the passes.
template <template <int, int, int, int> class Columns, int kW, int kD1>
RLOSS_INLINE void ByColumns(const float* in, int n, int d1, int stride,
    const int* vertex, const float* weight, float* out, TilePrefetch* ahead) {
  for (int k0 = 0; k0 < stride; k0 += 4 * kLanes) {
    switch (std::min(4, (stride - k0) / kLanes)) {
      case 1: Pass<Columns, kW, kD1, 8>(in, n, d1, stride, k0, vertex, weight,
                                        out, ahead);
              break;
      case 2: Pass<Columns, kW, kD1, 16>(in, n, d1, stride, k0, vertex,
                                         weight, out, ahead);
              break;
      case 3: Pass<Columns, kW, kD1, 24>(in, n, d1, stride, k0, vertex,
                                         weight, out, ahead);
              break;
      default: Pass<Columns, kW, kD1, 32>(in, n, d1, stride, k0, vertex,
                                          weight, out, ahead);
    }
  }
}

// Point visits of a tile of n points over all of ByColumns' passes.
inline int Visits(int n, int stride) {
  return n * ((stride + 4 * kLanes - 1) / (4 * kLanes));
}

// Columns over a tile, with six vertices a point (five features: x, y and
// three colours) fixed at compile time.
template <template <int, int, int, int> class Columns, int kW>
RLOSS_INLINE void ColumnsOfTile(const float* in, int n, int d1, int stride,
    const int* vertex, const float* weight, float* out, TilePrefetch* ahead) {
  if (d1 == 6) {
    ByColumns<Columns, kW, 6>(in, n, d1, stride, vertex, weight, out, ahead);
  } else {
    ByColumns<Columns, kW, 0>(in, n, d1, stride, vertex, weight, out, ahead);
  }
}

#ifdef RLOSS_HAVE_V3
RLOSS_V3 void SplatTileV3(const float* tile, int n, int d1, int stride,
    const int* vertex, const float* weight, float* acc, TilePrefetch ahead) {
  ColumnsOfTile<SplatColumns, 8>(tile, n, d1, stride, vertex, weight, acc,
                                 &ahead);
}

RLOSS_V3 void SliceTileV3(const float* values, int n, int d1, int stride,
    const int* vertex, const float* weight, float* tile, TilePrefetch ahead) {
  ColumnsOfTile<SliceColumns, 8>(values, n, d1, stride, vertex, weight, tile,
                                 &ahead);
}
#endif

// The splat and slice of a tile in the portable path's lanes (the V3
// functions where v3). ahead is taken by value so that its cursor stays in
// registers.
void SplatTile(const float* tile, int n, int d1, int stride, const int* vertex,
    const float* weight, float* acc, TilePrefetch ahead, bool v3) {
#ifdef RLOSS_HAVE_V3
  if (v3) return SplatTileV3(tile, n, d1, stride, vertex, weight, acc, ahead);
#endif
  ColumnsOfTile<SplatColumns, kPortableLanes>(tile, n, d1, stride, vertex,
                                              weight, acc, &ahead);
}

void SliceTile(const float* values, int n, int d1, int stride,
    const int* vertex, const float* weight, float* tile, TilePrefetch ahead,
    bool v3) {
#ifdef RLOSS_HAVE_V3
  if (v3) {
    return SliceTileV3(values, n, d1, stride, vertex, weight, tile, ahead);
  }
#endif
  ColumnsOfTile<SliceColumns, kPortableLanes>(values, n, d1, stride, vertex,
                                              weight, tile, &ahead);
}

// sum[i] += part[i]
RLOSS_INLINE void AddToLoop(const float* part, size_t size, float* sum) {
  for (size_t i = 0; i < size; ++i) sum[i] += part[i];
}

// sum_i a[i] b[i] in double, n a multiple of kLanes: in kLanes partial sums,
// so that the additions do not wait on each other.
RLOSS_INLINE double DotLoop(const float* a, const float* b, size_t n) {
  double part[kLanes] = {0};
  for (size_t i = 0; i < n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      part[j] += static_cast<double>(a[i + j]) * b[i + j];
    }
  }
  double dot = 0;
  for (int j = 0; j < kLanes; ++j) dot += part[j];
  return dot;
}

// dst[v + 1] = src[v + 1] + (src[lo] + src[hi]) / 2 for vertices [begin, end).
RLOSS_INLINE void BlurLoop(const float* src, const int* neighbour, int begin,
    int end, int stride, float* dst) {
  for (int v = begin; v < end; ++v) {
    const float* self = src + static_cast<size_t>(v + 1) * stride;
    const float* a = src + static_cast<size_t>(neighbour[2 * v]) * stride;
    const float* b = src + static_cast<size_t>(neighbour[2 * v + 1]) * stride;
    float* out = dst + static_cast<size_t>(v + 1) * stride;
    for (int k = 0; k < stride; k += kLanes) {
#pragma omp simd
      for (int j = 0; j < kLanes; ++j) {
        out[k + j] = self[k + j] + 0.5f * (a[k + j] + b[k + j]);
      }
    }
  }
}

#ifdef RLOSS_HAVE_V3
RLOSS_V3 void AddToV3(const float* part, size_t size, float* sum) {
  AddToLoop(part, size, sum);
}

RLOSS_V3 double DotV3(const float* a, const float* b, size_t n) {
  return DotLoop(a, b, n);
}

RLOSS_V3 void BlurRowsV3(const float* src, const int* neighbour, int begin,
    int end, int stride, float* dst) {
  BlurLoop(src, neighbour, begin, end, stride, dst);
}
#endif

// The loops above, compiled for the CPU at hand (v3: the V3 functions).
void AddTo(const float* part, size_t size, float* sum, bool v3) {
#ifdef RLOSS_HAVE_V3
  if (v3) return AddToV3(part, size, sum);
#endif
  AddToLoop(part, size, sum);
}

double Dot(const float* a, const float* b, size_t n, bool v3) {
#ifdef RLOSS_HAVE_V3
  if (v3) return DotV3(a, b, n);
#endif
  return DotLoop(a, b, n);
}

void BlurRows(const float* src, const int* neighbour, int begin, int end,
    int stride, float* dst, bool v3) {
#ifdef RLOSS_HAVE_V3
  if (v3) return BlurRowsV3(src, neighbour, begin, end, stride, dst);
#endif
  BlurLoop(src, neighbour, begin, end, stride, dst);
}

#ifdef RLOSS_HAVE_AVX2
inline bool CpuHasAvx2() { return __builtin_cpu_supports("avx2"); }

__attribute__((target("avx2"))) inline __m256i Home8(__m256i h, int shift) {
  return _mm256_srl_epi32(
      _mm256_mullo_epi32(h, _mm256_set1_epi32(static_cast<int>(kHomeFactor))),
      _mm_cvtsi32_si128(shift));
}

// The vertices of a block of n points, found by gathers: each point's cell
// is looked for by its tag (CellPacking) in its home slot only, its d+1
// vertices in the cell's cache. vertex gets d+1 entries per point: the
// vertices + 1, or all 0 where the cell or any vertex was not found so (the
// caller looks those up one by one); found_cell the cell's index where it was
// found, else -1. Returns a bit per point not found so. Reads only, so the
// results stay valid while the caller inserts.
// slot and table_shift are the cell table's (KeyTable::slots).
template <int kDim>
__attribute__((target("avx2"))) unsigned int LookupBlock(int dyn_dim, int n,
    int wide, const int* slot, int table_shift, const CellPacking& packing,
    const int* cell_vertex, const float* rem0, const int* masks, int* vertex,
    int* found_cell) {
  const int dim = kDim ? kDim : dyn_dim;
  const int d1 = dim + 1;
  const __m256i zero = _mm256_setzero_si256();
  const __m256i outside = _mm256_set1_epi32(-(1 << packing.bits));
  const __m256 down = _mm256_set1_ps(1.0f / d1);
  unsigned int missed = 0;
  // Two passes: every group's cells first, then every group's vertices, so
  // that the block's gathers of one level are in flight together.
  __m256i cell_ok[kBlock / 8], cell_at[kBlock / 8];
  for (int g = 0, b = 0; b < n; b += 8, ++g) {
    // The tag packs the cell's coordinates, so a tag match is a key match.
    __m256i tag = zero, out = zero;
    for (int i = 0; i < dim; ++i) {
      // Multiples of d1 in rem0: the rounded quotient is exact.
      const __m256i q = _mm256_sub_epi32(
          _mm256_cvtps_epi32(_mm256_mul_ps(
              _mm256_loadu_ps(rem0 + i * kBlock + b), down)),
          _mm256_set1_epi32(packing.base[i]));
      out = _mm256_or_si256(out, _mm256_and_si256(q, outside));
      tag = _mm256_or_si256(tag, _mm256_sll_epi32(
          q, _mm_cvtsi32_si128(packing.bits * i)));
    }
    const __m256i s = Home8(tag, table_shift);
    __m256i index = _mm256_i32gather_epi32(slot, s, 8);
    const __m256i ok = _mm256_and_si256(
        _mm256_and_si256(_mm256_cmpgt_epi32(index, _mm256_set1_epi32(-1)),
                         _mm256_cmpeq_epi32(out, zero)),
        _mm256_cmpeq_epi32(_mm256_i32gather_epi32(slot + 1, s, 8), tag));
    index = _mm256_and_si256(index, ok);  // empty slots read cell 0
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(found_cell + b),
                        _mm256_or_si256(index, _mm256_cmpeq_epi32(ok, zero)));
    cell_ok[g] = ok;
    cell_at[g] = _mm256_slli_epi32(index, d1);
  }
  for (int g = 0, b = 0; b < n; b += 8, ++g) {
    __m256i ok = cell_ok[g];
    __m256i v[8];
    for (int r = 0; r < d1; ++r) {
      const __m256i m = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(masks + r * kBlock + b));
      v[r] = _mm256_i32gather_epi32(cell_vertex,
                                    _mm256_add_epi32(cell_at[g], m), 4);
      ok = _mm256_andnot_si256(_mm256_cmpeq_epi32(v[r], zero), ok);
    }
    missed |= static_cast<unsigned int>(
        _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(ok, zero))))
        << b;
    Float8 rows[8] = {};
    for (int r = 0; r < d1; ++r) {
      rows[r] = reinterpret_cast<Float8>(_mm256_and_si256(v[r], ok));
    }
    Transpose(rows);
    for (int p = 0; p < std::min(8, n - b); ++p) {
      StoreRow(vertex + (b + p) * d1, rows[p], d1, b + p < wide);
    }
  }
  return missed & ((2u << (n - 1)) - 1);
}
#else
inline bool CpuHasAvx2() { return false; }
#endif
}  // namespace

const int PermutohedralLattice::kMaxFeature;

PermutohedralLattice::PermutohedralLattice()
    : dim_(0), num_points_(0), num_vertices_(0), value_size_(0), stride_(0) {}

// Defined inline: under -fPIC an out-of-line member could be interposed,
// and then it would not be inlined into the build loop.
inline void PermutohedralLattice::KeyTable::Reset(int key_size,
    int sparsity) {
  key_size_ = key_size;
  sparsity_ = sparsity;
  size_ = 0;
  keys_.clear();
  hashes_.clear();
  if (slot_.empty()) slot_.resize(1024);
  std::fill(slot_.begin(), slot_.end(), Slot{-1, 0});
  mask_ = slot_.size() - 1;
  shift_ = 32 - __builtin_ctz(slot_.size());
}

// kSize > 0 is the key size fixed at compile time (0: key_size_).
template <int kSize>
inline int PermutohedralLattice::KeyTable::Find(const int* key,
    unsigned int h) const {
  const int size = kSize ? kSize : key_size_;
  for (unsigned int s = Home(h, shift_); slot_[s].index >= 0;
       s = (s + 1) & mask_) {
    if (slot_[s].hash != h) continue;
    const int* k = &keys_[static_cast<size_t>(slot_[s].index) * size];
    int diff = 0;
    for (int i = 0; i < size; ++i) diff |= k[i] ^ key[i];
    if (diff == 0) return slot_[s].index;
  }
  return -1;
}

template <int kSize>
inline int PermutohedralLattice::KeyTable::FindOrInsert(const int* key,
    unsigned int h) {
  const int size = kSize ? kSize : key_size_;
  unsigned int s = Home(h, shift_);
  for (; slot_[s].index >= 0; s = (s + 1) & mask_) {
    if (slot_[s].hash != h) continue;
    const int* k = &keys_[static_cast<size_t>(slot_[s].index) * size];
    int diff = 0;
    for (int i = 0; i < size; ++i) diff |= k[i] ^ key[i];
    if (diff == 0) return slot_[s].index;
  }
  slot_[s] = Slot{size_, h};
  keys_.insert(keys_.end(), key, key + size);
  hashes_.push_back(h);
  if ((++size_ << sparsity_) > static_cast<int>(slot_.size())) Grow();
  return size_ - 1;
}

void PermutohedralLattice::KeyTable::Grow() {
  slot_.assign(2 * slot_.size(), Slot{-1, 0});
  mask_ = slot_.size() - 1;
  --shift_;
  for (int v = 0; v < size_; ++v) {
    unsigned int s = Home(hashes_[v], shift_);
    while (slot_[s].index >= 0) s = (s + 1) & mask_;
    slot_[s] = Slot{v, hashes_[v]};
  }
}

size_t PermutohedralLattice::KeyTable::bytes() const {
  return sizeof(int) * (keys_.capacity() + 2 * slot_.capacity() +
                        hashes_.capacity());
}

// Finds the simplices of points [begin, end) of planar features: their
// weights, and their vertices as indices (+1) into this builder's own vertex
// table, numbered in order of first touch.
void PermutohedralLattice::Builder::Run(const FeatureSource& input, int dim,
    int begin, int end, int* vertex, float* weight) {
  if (dim == 5) {
    RunFor<5>(input, dim, begin, end, vertex, weight);
  } else {
    RunFor<0>(input, dim, begin, end, vertex, weight);
  }
}

// kDim > 0 fixes the dimension at compile time, so the short loops over the
// d+1 vertices unroll; 0 takes it from dyn_dim.
template <int kDim>
void PermutohedralLattice::Builder::RunFor(const FeatureSource& features,
    int dyn_dim, int begin, int end, int* vertex, float* weight) {
  const int dim = kDim ? kDim : dyn_dim;
  const int d1 = dim + 1;
  vertices.Reset(dim);
  // Most cells are then found at their home slot, which LookupBlock needs.
  cells.Reset(dim, 3);
  cell_vertex.clear();
  // Up to 2^10 vertices around a cell are cached; beyond, every vertex of
  // every point is looked up in the vertex table.
  const bool use_cells = d1 <= 10;
  const int around = use_cells ? 1 << d1 : 0;
  block.resize((4 * d1 + 1) * kBlock + dim);
  float* elevated = &block[0];
  float* rem0 = elevated + d1 * kBlock;
  float* rank = rem0 + d1 * kBlock;
  float* bary = rank + d1 * kBlock;
  float* scale = bary + (d1 + 1) * kBlock;
  iblock.resize(2 * d1 + (d1 + 1) * kBlock + dim);
  int* cell = &iblock[0];  // this point's remainder-0 point
  int* vkey = cell + d1;
  int* masks = vkey + d1;  // d1 x kBlock
  int* found_cell = masks + d1 * kBlock;  // where gathered, or -1
  CellPacking packing = {std::min(16, 31 / std::max(1, dim)),
                         found_cell + kBlock};
  // Hashes: a vertex's is its cell's plus r * sum_i factor_i, less d1 times
  // the factors of the coordinates its mask steps down.
  factor.resize(dim);
  step_down.resize(around);
  unsigned int factor_sum = 0;
  for (int i = 0; i < dim; ++i) {
    factor[i] = KeyFactor(i);
    factor_sum += factor[i];
  }
  for (int m = 0; m < around; ++m) {
    unsigned int sum = 0;
    for (int i = 0; i < dim; ++i) sum += (m >> i) & 1 ? factor[i] : 0;
    step_down[m] = sum * d1;
  }
  // cell, cell_hash and last_cell are those of the point last looked up one
  // by one.
  int last_cell = -1;
  unsigned int cell_hash = 0;
  const bool gather = use_cells && d1 <= 8 && CpuHasAvx2();
  const bool v3 = CpuIsV3();

  // The lattice is scaled so that its blur approximates a unit Gaussian.
  const float inv_std = std::sqrt(2.0 / 3.0) * d1;
  for (int i = 0; i < dim; ++i) {
    scale[i] = inv_std / std::sqrt(static_cast<float>((i + 1) * (i + 2)));
  }
  for (int p0 = begin; p0 < end; p0 += kBlock) {
    const int n = std::min(kBlock, end - p0);
    const size_t first = static_cast<size_t>(p0) * d1;
    // Points whose rows may be stored as whole 8-lane vectors (spilling into
    // the next point's row, stored after), short of the range's end.
    const int tail = (std::max(0, kLanes - d1) + d1 - 1) / d1;
    const int wide = std::max(0, std::min(n, end - tail - p0));
    SimplexBlock(features, p0, dim, n, wide, scale, elevated, rem0, rank,
                 bary, masks, weight + first, v3);
    if (use_cells && p0 == begin) {  // tags pack cells near the first
      for (int i = 0; i < dim; ++i) {
        packing.base[i] = static_cast<int>(rem0[i * kBlock]) / d1 -
                          (1 << (packing.bits - 1));
      }
    }
    const bool gathered = gather && cells.size() > 0;
    // Bits of the points left to look up one by one.
    unsigned int pending = (2u << (n - 1)) - 1;
#ifdef RLOSS_HAVE_AVX2
    if (gathered) {
      pending = LookupBlock<kDim>(dim, n, wide, cells.slots(),
          cells.slot_shift(), packing, &cell_vertex[0], rem0, masks,
          vertex + first, found_cell);
    }
#endif
    for (; pending != 0; pending &= pending - 1) {
      const int b = __builtin_ctz(pending);
      int* v = vertex + first + b * d1;
      bool new_cell = last_cell < 0;
      for (int i = 0; i < d1; ++i) {
        const int c = static_cast<int>(rem0[i * kBlock + b]);
        new_cell |= c != cell[i];
        cell[i] = c;
      }
      // Vertex r of the simplex is the cell's point plus r in every
      // coordinate, less d+1 in the r coordinates ranked highest: the set of
      // those coordinates (a bit mask) names it among the cell's vertices.
      if (!use_cells) {
        for (int r = 0; r < d1; ++r) {
          const int mask = masks[r * kBlock + b];
          for (int i = 0; i < dim; ++i) {
            vkey[i] = cell[i] + ((mask >> i) & 1 ? r - d1 : r);
          }
          v[r] = vertices.FindOrInsert<kDim>(vkey, HashKey(vkey, dim)) + 1;
        }
        continue;
      }
      if (new_cell) {  // neighbours often share a cell
        cell_hash = 0;
        for (int i = 0; i < dim; ++i) {
          cell_hash += static_cast<unsigned int>(cell[i]) * factor[i];
        }
        last_cell = gathered && found_cell[b] >= 0 ? found_cell[b] :
            cells.FindOrInsert<kDim>(cell, packing.Tag(cell, dim, cell_hash));
        if (last_cell == static_cast<int>(cell_vertex.size()) / around) {
          cell_vertex.resize(cell_vertex.size() + around, 0);
        }
      }
      int* around_cell = &cell_vertex[static_cast<size_t>(last_cell) * around];
      // Read all d+1 cached vertices first (independent loads), then look up
      // those not cached yet. A point's masks differ (vertex r's has r bits),
      // so filling one does not change another's.
      unsigned int unknown = 0;
      for (int r = 0; r < d1; ++r) {
        v[r] = around_cell[masks[r * kBlock + b]];
        unknown |= (v[r] == 0 ? 1u : 0u) << r;
      }
      for (; unknown != 0; unknown &= unknown - 1) {
        const int r = __builtin_ctz(unknown);
        const int mask = masks[r * kBlock + b];
        for (int i = 0; i < dim; ++i) {
          vkey[i] = cell[i] + ((mask >> i) & 1 ? r - d1 : r);
        }
        around_cell[mask] = vertices.FindOrInsert<kDim>(
            vkey, cell_hash + r * factor_sum - step_down[mask]) + 1;
        v[r] = around_cell[mask];
      }
    }
  }
}

void PermutohedralLattice::Init(const float* features, int dim,
    int num_points) {
  const FeatureSource input = {features, static_cast<size_t>(num_points), 0,
                               1, 1};
  Build(input, dim, num_points);
}

void PermutohedralLattice::InitBilateral(const float* image, int channels,
    int height, int width, float sigma_xy, float sigma_rgb) {
  const size_t plane = static_cast<size_t>(height) * width;
  const FeatureSource input = {image, plane, width, sigma_xy, sigma_rgb};
  Build(input, 2 + channels, static_cast<int>(plane));
}

void PermutohedralLattice::Build(const FeatureSource& input, int dim,
    int num_points) {
  dim_ = dim;
  num_points_ = num_points;
  const int d1 = dim + 1;
  vertex_.resize(static_cast<size_t>(num_points) * d1);
  weight_.resize(static_cast<size_t>(num_points) * d1);
  // Chunks of points are built in parallel, each with its own tables, then
  // merged in chunk order: vertices keep their first-touch numbers, so the
  // lattice is the same on any number of threads.
  const int chunks =
      std::max(1, std::min(Threads(), num_points / kChunkPoints));
  if (static_cast<int>(builders_.size()) < chunks) builders_.resize(chunks);
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int c = 0; c < chunks; ++c) {
    builders_[c].Run(input, dim,
        static_cast<int64_t>(num_points) * c / chunks,
        static_cast<int64_t>(num_points) * (c + 1) / chunks,
        vertex_.data(), weight_.data());
  }
  std::swap(vertices_, builders_[0].vertices);
  for (int c = 1; c < chunks; ++c) {
    const KeyTable& local = builders_[c].vertices;
    std::vector<int>& global = builders_[c].global;
    global.resize(local.size());
    for (int v = 0; v < local.size(); ++v) {
      global[v] = vertices_.FindOrInsert(local.key(v), local.hash(v)) + 1;
    }
  }
  // Renumbered by all threads, each chunk in turn: there are no more chunks
  // than threads, so one thread a chunk would leave all but one idle.
  if (chunks > 1) {
#pragma omp parallel
    for (int c = 1; c < chunks; ++c) {
      const int* global = &builders_[c].global[0];
      const int64_t first =
          static_cast<int64_t>(num_points) * c / chunks * d1;
      const int64_t last =
          static_cast<int64_t>(num_points) * (c + 1) / chunks * d1;
#pragma omp for schedule(static)
      for (int64_t i = first; i < last; ++i) {
        vertex_[i] = global[vertex_[i] - 1];
      }
    }
  }
  num_vertices_ = vertices_.size();

  if (dim == 5) {
    FindNeighbours<5>();
  } else {
    FindNeighbours<0>();
  }
}

// Neighbours of every vertex along each of the d+1 lattice axes: all
// coordinates -1, the axis' one +d (the last coordinate is implicit). Only
// the lower one is looked up: v is its lower neighbour's upper one. Threads
// take whole axes: a vertex's upper neighbour may be any vertex, so threads
// that split the vertices would write into each other's cache lines.
template <int kDim>
void PermutohedralLattice::FindNeighbours() {
  const int dim = kDim ? kDim : dim_, d1 = dim + 1;
  const int m = num_vertices_;
  neighbour_.assign(2 * static_cast<size_t>(d1) * m, 0);
  // Each thread's keys on lines of their own: threads that wrote into one
  // line would take it from each other at every key. (Padded but not
  // aligned, two threads' keys shared a line in some processes, and the
  // search then took as long on two threads as on one.) A fixed dimension
  // keeps them on the thread's stack.
  const size_t padded = kDim ? 0 : (dim + 15) / 16 * 16;
  keys_scratch_.resize(static_cast<size_t>(Threads()) * padded);
  unsigned int factor_sum = 0;
  for (int i = 0; i < dim; ++i) factor_sum += KeyFactor(i);
#pragma omp parallel for schedule(static) if (!Nested() && m > 1024)
  for (int axis = 0; axis < d1; ++axis) {
    const int kFixedLength = kDim ? kDim : 1;
    int fixed[kFixedLength];
    int* lo = kDim ? fixed :
        &keys_scratch_[static_cast<size_t>(ThreadId()) * padded];
    int* row = &neighbour_[2 * static_cast<size_t>(axis) * m];
    const unsigned int shift = axis < dim ? KeyFactor(axis) * d1 : 0;
    for (int v = 0; v < m; ++v) {
      const int* k = vertices_.key(v);
      for (int i = 0; i < dim; ++i) lo[i] = k[i] - 1;
      if (axis < dim) lo[axis] = k[axis] + dim;
      const int u = vertices_.Find<kDim>(
          lo, vertices_.hash(v) - factor_sum + shift);
      row[2 * v] = u + 1;
      if (u >= 0) row[2 * u + 1] = v + 1;
    }
  }
}

void PermutohedralLattice::Splat(const float* in, int value_size,
    const float* point_weight) {
  value_size_ = value_size;
  stride_ = (value_size + kLanes - 1) / kLanes * kLanes;
  const int d1 = dim_ + 1, n = num_points_, vs = value_size;
  const size_t rows = static_cast<size_t>(num_vertices_) + 1;
  const size_t size = rows * stride_;
  // Fixed chunks, summed in a fixed order: the same bits on any thread count.
  const int chunks = std::max(1, std::min(kChunks, n / kChunkPoints));
  // On one thread each chunk after the first is added to the sum as soon as
  // it is done (the same sums), so one buffer serves them all.
  const bool serial = Threads() == 1;
  splat_.assign(size, 0.0f);
  partial_.resize((serial ? std::min(chunks - 1, 1) : chunks - 1) * size);
  transposed_.resize(static_cast<size_t>(Threads()) * kTile * stride_);
  const bool v3 = CpuIsV3();
  const int stride = stride_;
#pragma omp parallel for schedule(static) if (!serial && chunks > 1)
  for (int c = 0; c < chunks; ++c) {
    float* acc = c == 0 ? splat_.data() :
        &partial_[serial ? 0 : (c - 1) * size];
    if (c > 0) std::fill(acc, acc + size, 0.0f);
    float* tile = &transposed_[static_cast<size_t>(ThreadId()) * kTile *
                               stride];
    const int end = static_cast<int>(static_cast<int64_t>(n) * (c + 1) /
                                     chunks);
    for (int p0 = static_cast<int>(static_cast<int64_t>(n) * c / chunks);
         p0 < end; p0 += kTile) {
      const int nt = std::min(kTile, end - p0);
      // Only whole tiles of this chunk: nothing past the planes' ends.
      const int later = p0 + kAhead * kTile;
      TilePrefetch ahead(later + kTile <= end ? in + later : NULL, n, vs,
                         Visits(nt, stride));
      GatherTile(in + p0, n, vs, nt,
                 point_weight ? point_weight + p0 : NULL, stride, tile, v3);
      SplatTile(tile, nt, d1, stride, &vertex_[static_cast<size_t>(p0) * d1],
                &weight_[static_cast<size_t>(p0) * d1], acc, ahead, v3);
    }
    if (serial && c > 0) AddTo(acc, size, splat_.data(), v3);
  }
  if (!serial && chunks > 1) {  // summed in chunk order, one pass over rows
    const float* part = &partial_[0];
    float* acc = splat_.data();
#pragma omp parallel for schedule(static) if (!Nested())
    for (int64_t i = 0; i < static_cast<int64_t>(size); ++i) {
      float sum = acc[i];
      for (int c = 1; c < chunks; ++c) sum += part[(c - 1) * size + i];
      acc[i] = sum;
    }
  }
}

void PermutohedralLattice::Blur(bool transpose) {
  const int d1 = dim_ + 1, m = num_vertices_;
  const size_t size = (static_cast<size_t>(m) + 1) * stride_;
  blurred_.resize(size);
  scratch_.resize(size);
  // Row 0 stands for absent neighbours: it must read as 0.
  std::fill(blurred_.begin(), blurred_.begin() + stride_, 0.0f);
  std::fill(scratch_.begin(), scratch_.begin() + stride_, 0.0f);
  // [1/2 1 1/2] along each axis in turn, ending in blurred_. Each axis'
  // blur is symmetric and the slice is the splat's transpose, so reversing
  // the axis order applies W's transpose.
  // One parallel region for all the steps (a barrier between steps, not a
  // fork and join each).
  const bool v3 = CpuIsV3();
  const int threads = Threads();
#pragma omp parallel num_threads(threads) if (threads > 1 && m > 1024)
  {
    const float* src = splat_.data();
    for (int step = 0; step < d1; ++step) {
      const int axis = transpose ? d1 - 1 - step : step;
      float* dst = (d1 - 1 - step) % 2 == 0 ? blurred_.data() : scratch_.data();
      const int* neighbour =
          neighbour_.data() + 2 * static_cast<size_t>(axis) * m;
#pragma omp for schedule(static)
      for (int t = 0; t < threads; ++t) {
        BlurRows(src, neighbour, static_cast<int64_t>(m) * t / threads,
                 static_cast<int64_t>(m) * (t + 1) / threads, stride_, dst,
                 v3);
      }
      src = dst;
    }
  }
}

void PermutohedralLattice::Slice(float* out, float scale,
    const float* point_weight) const {
  const int d1 = dim_ + 1, n = num_points_, vs = value_size_;
  const int stride = stride_;
  const float alpha = scale / (1.0f + std::pow(2.0f, -dim_));
  const int tiles = (n + kTile - 1) / kTile;
  AlignedFloats& tiles_buffer = transposed_;
  tiles_buffer.resize(static_cast<size_t>(Threads()) * kTile * stride);
  const bool v3 = CpuIsV3();
#pragma omp parallel for schedule(static) if (!Nested())
  for (int i = 0; i < tiles; ++i) {
    const int p0 = i * kTile, nt = std::min(kTile, n - p0);
    float* tile = &tiles_buffer[static_cast<size_t>(ThreadId()) * kTile *
                                stride];
    const int later = p0 + kAhead * kTile;
    TilePrefetch ahead(later + kTile <= n ? out + later : NULL, n, vs,
                       Visits(nt, stride));
    SliceTile(blurred_.data(), nt, d1, stride,
              &vertex_[static_cast<size_t>(p0) * d1],
              &weight_[static_cast<size_t>(p0) * d1], tile, ahead, v3);
    ScatterTile(tile, nt, vs, stride, alpha,
                point_weight ? point_weight + p0 : NULL, n, out + p0, v3);
  }
}

double PermutohedralLattice::SplatDotBlurred() const {
  const size_t size = (static_cast<size_t>(num_vertices_) + 1) * stride_;
  // data(), not [stride_]: with no points row 0 is all there is.
  return Dot(splat_.data() + stride_, blurred_.data() + stride_,
             size - stride_, CpuIsV3()) /
         (1.0 + std::pow(2.0, -dim_));
}

void PermutohedralLattice::Filter(const float* in, int value_size, float* out,
                                  bool transpose) {
  if (num_points_ == 0 || value_size <= 0) return;
  Splat(in, value_size);
  Blur(transpose);
  Slice(out);
}

size_t PermutohedralLattice::memory_bytes() const {
  size_t bytes = vertices_.bytes();
  for (size_t c = 0; c < builders_.size(); ++c) {
    const Builder& b = builders_[c];
    bytes += b.vertices.bytes() + b.cells.bytes() +
        sizeof(int) * (b.cell_vertex.capacity() + b.iblock.capacity() +
                       b.global.capacity()) +
        sizeof(float) * b.block.capacity();
  }
  return bytes +
         sizeof(int) * (vertex_.capacity() + neighbour_.capacity() +
                        keys_scratch_.capacity()) +
         sizeof(float) * (weight_.capacity() +
                          splat_.capacity() + partial_.capacity() +
                          blurred_.capacity() + scratch_.capacity() +
                          transposed_.capacity());
}

// The features InitBilateral makes as it reads them, written out: one
// definition of their arithmetic (FeatureSource's).
void ComputeBilateralFeatures(const float* image, int channels, int height,
    int width, float sigma_xy, float sigma_rgb, float* features) {
  const size_t plane = static_cast<size_t>(height) * width;
  const FeatureSource source = {image, plane, width, sigma_xy, sigma_rgb};
  for (int i = 0; i < 2 + channels; ++i) {
    source.Copy(i, 0, static_cast<int>(plane), features + i * plane);
  }
}

void filterrgbxy(const float* image, int channels, int height, int width,
    const float* values, int value_size, float sigma_xy, float sigma_rgb,
    float* out) {
  PermutohedralLattice lattice;
  lattice.InitBilateral(image, channels, height, width, sigma_xy, sigma_rgb);
  lattice.Filter(values, value_size, out);
}

}  // namespace caffe
