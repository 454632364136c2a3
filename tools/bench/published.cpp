#include "published.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

namespace rloss_bench {

namespace {

double Now() {
  return std::chrono::duration<double>(
      std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

void PublishedLattice::Grow() {
  const int old_capacity = capacity_;
  std::vector<int16_t> old_keys;
  old_keys.swap(keys_);
  capacity_ = old_capacity * 2;
  keys_.assign(static_cast<size_t>(capacity_) * dim_, 0);
  table_.assign(capacity_, -1);
  for (int v = 0; v < num_vertices_; ++v) {
    const int16_t* key = &old_keys[static_cast<size_t>(v) * dim_];
    std::copy(key, key + dim_, &keys_[static_cast<size_t>(v) * dim_]);
  }
  for (int v = 0; v < num_vertices_; ++v) {
    const int16_t* key = &keys_[static_cast<size_t>(v) * dim_];
    size_t h = 0;
    for (int i = 0; i < dim_; ++i) h = (h + key[i]) * 2531011;
    h %= capacity_;
    while (table_[h] != -1) h = (h + 1) % capacity_;
    table_[h] = v;
  }
}

int PublishedLattice::Find(const int16_t* key, bool create) {
  if (create && 2 * num_vertices_ >= capacity_) Grow();
  size_t h = 0;
  for (int i = 0; i < dim_; ++i) h = (h + key[i]) * 2531011;
  h %= capacity_;
  while (true) {
    const int v = table_[h];
    if (v == -1) {
      if (!create) return -1;
      std::copy(key, key + dim_,
                &keys_[static_cast<size_t>(num_vertices_) * dim_]);
      table_[h] = num_vertices_;
      return num_vertices_++;
    }
    const int16_t* k = &keys_[static_cast<size_t>(v) * dim_];
    bool same = true;
    for (int i = 0; i < dim_ && same; ++i) same = k[i] == key[i];
    if (same) return v;
    h = (h + 1) % capacity_;
  }
}

void PublishedLattice::Init(const float* features, int dim, int num_points) {
  if (dim < 1 || num_points < 1) return;
  const int d1 = dim + 1;
  dim_ = dim;
  num_points_ = num_points;
  num_vertices_ = 0;
  capacity_ = 2 * num_points;
  keys_.assign(static_cast<size_t>(capacity_) * dim, 0);
  table_.assign(capacity_, -1);
  offset_.assign(static_cast<size_t>(num_points) * d1, 0);
  barycentric_.assign(static_cast<size_t>(num_points) * d1, 0);

  std::vector<float> scale(dim), elevated(d1), rem0(d1), bary(d1 + 1);
  std::vector<int> rank(d1);
  std::vector<int16_t> key(dim);
  // The canonical simplex: vertex r has r at the first d1 - r coordinates.
  std::vector<int> canonical(d1 * d1);
  for (int r = 0; r < d1; ++r) {
    for (int i = 0; i < d1 - r; ++i) canonical[r * d1 + i] = r;
    for (int i = d1 - r; i < d1; ++i) canonical[r * d1 + i] = r - d1;
  }
  const float inv_std = std::sqrt(2.0 / 3.0) * d1;
  for (int i = 0; i < dim; ++i) {
    scale[i] = 1.0f / std::sqrt(static_cast<float>((i + 2) * (i + 1))) *
               inv_std;
  }
  const float down = 1.0f / d1;
  for (int p = 0; p < num_points; ++p) {
    const float* f = features + static_cast<size_t>(p) * dim;
    float sm = 0;
    for (int j = dim; j > 0; --j) {
      const float cf = f[j - 1] * scale[j - 1];
      elevated[j] = sm - j * cf;
      sm += cf;
    }
    elevated[0] = sm;
    int sum = 0;
    for (int i = 0; i < d1; ++i) {
      const float v = down * elevated[i];
      const float up = std::ceil(v) * d1, lo = std::floor(v) * d1;
      rem0[i] = (up - elevated[i] < elevated[i] - lo) ? up : lo;
      sum += static_cast<int>(rem0[i] * down);
    }
    for (int i = 0; i < d1; ++i) rank[i] = 0;
    for (int i = 0; i < dim; ++i) {
      const double di = elevated[i] - rem0[i];
      for (int j = i + 1; j < d1; ++j) {
        if (di < elevated[j] - rem0[j]) {
          ++rank[i];
        } else {
          ++rank[j];
        }
      }
    }
    for (int i = 0; i < d1; ++i) {
      rank[i] += sum;
      if (rank[i] < 0) {
        rank[i] += d1;
        rem0[i] += d1;
      } else if (rank[i] > dim) {
        rank[i] -= d1;
        rem0[i] -= d1;
      }
    }
    for (int i = 0; i <= d1; ++i) bary[i] = 0;
    for (int i = 0; i < d1; ++i) {
      const float v = (elevated[i] - rem0[i]) * down;
      bary[dim - rank[i]] += v;
      bary[dim - rank[i] + 1] -= v;
    }
    bary[0] += 1.0f + bary[d1];
    for (int r = 0; r < d1; ++r) {
      for (int i = 0; i < dim; ++i) {
        key[i] = static_cast<int16_t>(rem0[i] + canonical[r * d1 + rank[i]]);
      }
      offset_[static_cast<size_t>(p) * d1 + r] = Find(&key[0], true);
      barycentric_[static_cast<size_t>(p) * d1 + r] = bary[r];
    }
  }

  const int m = num_vertices_;
  blur_lo_.assign(static_cast<size_t>(d1) * m, 0);
  blur_hi_.assign(static_cast<size_t>(d1) * m, 0);
  std::vector<int16_t> n1(dim), n2(dim);
  for (int j = 0; j < d1; ++j) {
    for (int v = 0; v < m; ++v) {
      const int16_t* k = &keys_[static_cast<size_t>(v) * dim];
      for (int i = 0; i < dim; ++i) {
        n1[i] = k[i] - 1;
        n2[i] = k[i] + 1;
      }
      if (j < dim) {
        n1[j] = k[j] + dim;
        n2[j] = k[j] - dim;
      }
      blur_lo_[static_cast<size_t>(j) * m + v] = Find(&n1[0], false);
      blur_hi_[static_cast<size_t>(j) * m + v] = Find(&n2[0], false);
    }
  }
}

void PublishedLattice::Compute(const float* in, int vs, float* out) const {
  const int d1 = dim_ + 1, m = num_vertices_;
  // Row 0 stands for absent neighbours; vertex v lives in row v + 1.
  float* values = new float[static_cast<size_t>(m + 2) * vs];
  float* new_values = new float[static_cast<size_t>(m + 2) * vs];
  std::fill(values, values + static_cast<size_t>(m + 2) * vs, 0.0f);
  std::fill(new_values, new_values + static_cast<size_t>(m + 2) * vs, 0.0f);
  for (int p = 0; p < num_points_; ++p) {
    for (int r = 0; r < d1; ++r) {
      const size_t at = static_cast<size_t>(p) * d1 + r;
      const int o = offset_[at] + 1;
      const float w = barycentric_[at];
      for (int c = 0; c < vs; ++c) values[o * vs + c] += w * in[p * vs + c];
    }
  }
  for (int j = 0; j < d1; ++j) {
    for (int v = 0; v < m; ++v) {
      const float* old_v = values + (v + 1) * vs;
      float* new_v = new_values + (v + 1) * vs;
      const int a = blur_lo_[static_cast<size_t>(j) * m + v] + 1;
      const int b = blur_hi_[static_cast<size_t>(j) * m + v] + 1;
      for (int c = 0; c < vs; ++c) {
        new_v[c] = old_v[c] + 0.5f * (values[a * vs + c] + values[b * vs + c]);
      }
    }
    float* t = values;
    values = new_values;
    new_values = t;
  }
  const float alpha = 1.0f / (1.0f + std::pow(2.0f, -dim_));
  for (int p = 0; p < num_points_; ++p) {
    for (int c = 0; c < vs; ++c) out[p * vs + c] = 0;
    for (int r = 0; r < d1; ++r) {
      const size_t at = static_cast<size_t>(p) * d1 + r;
      const int o = offset_[at] + 1;
      const float w = barycentric_[at];
      for (int c = 0; c < vs; ++c) {
        out[p * vs + c] += w * values[o * vs + c] * alpha;
      }
    }
  }
  delete[] values;
  delete[] new_values;
}

double PublishedDenseCRF(const float* image, int channels, int height,
    int width, const float* prob, int classes, float sigma_xy,
    float sigma_rgb, float* grad, double* times) {
  const int n = height * width, dim = 2 + channels;
  double t0 = Now();
  std::vector<float> features(static_cast<size_t>(n) * dim);
  std::vector<float> roi(n);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const int i = y * width + x;
      float* f = &features[static_cast<size_t>(i) * dim];
      f[0] = x / sigma_xy;
      f[1] = y / sigma_xy;
      bool inside = false;
      for (int c = 0; c < channels; ++c) {
        const float v = image[c * n + i];
        f[2 + c] = v / sigma_rgb;
        inside = inside || std::trunc(v) != 0;
      }
      roi[i] = inside ? 1 : 0;
    }
  }
  PublishedLattice lattice;
  lattice.Init(&features[0], dim, n);
  double t1 = Now();
  times[0] += t1 - t0;
  std::vector<float> s(n), ws(n);
  double energy = 0;
  for (int k = 0; k < classes; ++k) {
    const float* pk = prob + static_cast<size_t>(k) * n;
    for (int i = 0; i < n; ++i) s[i] = pk[i] * roi[i];
    lattice.Compute(&s[0], 1, &ws[0]);
    float* gk = grad + static_cast<size_t>(k) * n;
    for (int i = 0; i < n; ++i) {
      energy += static_cast<double>(s[i]) * ws[i];
      gk[i] = -2 * ws[i] * roi[i];
    }
  }
  times[1] += Now() - t1;
  return -energy;
}

}  // namespace rloss_bench
