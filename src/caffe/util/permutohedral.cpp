#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "caffe/util/permutohedral.hpp"

namespace caffe {

namespace {

inline unsigned int HashKey(const int* key, int dim) {
  unsigned int h = 0;
  for (int i = 0; i < dim; ++i) {
    h = (h + static_cast<unsigned int>(key[i])) * 2654435761u;
  }
  return h ^ (h >> 15);
}

}  // namespace

int PermutohedralLattice::Probe(const int* key, unsigned int* slot) const {
  *slot = HashKey(key, dim_) & table_mask_;
  while (true) {
    const int v = table_[*slot];
    if (v < 0) return -1;
    if (std::equal(key, key + dim_, &keys_[static_cast<size_t>(v) * dim_])) {
      return v;
    }
    *slot = (*slot + 1) & table_mask_;
  }
}

int PermutohedralLattice::Find(const int* key) const {
  unsigned int slot;
  return Probe(key, &slot);
}

int PermutohedralLattice::FindOrInsert(const int* key) {
  if (2 * (num_vertices_ + 1) > static_cast<int>(table_.size())) {
    // Keep the load factor under 1/2: double and rehash.
    table_.assign(2 * table_.size(), -1);
    table_mask_ = table_.size() - 1;
    for (int v = 0; v < num_vertices_; ++v) {
      unsigned int slot = HashKey(&keys_[static_cast<size_t>(v) * dim_], dim_)
          & table_mask_;
      while (table_[slot] >= 0) slot = (slot + 1) & table_mask_;
      table_[slot] = v;
    }
  }
  unsigned int slot;
  const int found = Probe(key, &slot);
  if (found >= 0) return found;
  table_[slot] = num_vertices_;
  keys_.insert(keys_.end(), key, key + dim_);
  return num_vertices_++;
}

void PermutohedralLattice::Init(const float* features, int dim,
    int num_points) {
  dim_ = dim;
  num_points_ = num_points;
  num_vertices_ = 0;
  const int d1 = dim + 1;
  vertex_.resize(static_cast<size_t>(num_points) * d1);
  weight_.resize(static_cast<size_t>(num_points) * d1);
  keys_.clear();
  size_t table_size = 64;
  while (table_size < static_cast<size_t>(num_points)) table_size *= 2;
  table_size = std::max(table_size, table_.size());  // reuse a grown table
  table_.assign(table_size, -1);
  table_mask_ = table_size - 1;

  // Per-point work arrays, kept in members so that Init does not allocate.
  work_.resize(4 * (d1 + 1));
  iwork_.resize(4 * d1);
  float* elevated = &work_[0];
  float* remainder0 = elevated + d1 + 1;
  float* bary = remainder0 + d1 + 1;
  float* scale = bary + d1 + 1;
  int* rank = &iwork_[0];
  int* key = rank + d1;
  int* lo = key + d1;
  int* hi = lo + d1;

  // The lattice is scaled so that its blur approximates a unit Gaussian.
  const float inv_std = std::sqrt(2.0 / 3.0) * d1;
  for (int i = 0; i < dim; ++i) {
    scale[i] = inv_std / std::sqrt(static_cast<float>((i + 1) * (i + 2)));
  }
  const float down = 1.0f / d1;
  for (int p = 0; p < num_points; ++p) {
    const float* f = features + static_cast<size_t>(p) * dim;
    // Project onto the hyperplane sum(x) = 0 of R^{d+1}.
    float sum_scaled = 0;
    for (int j = dim; j > 0; --j) {
      const float cf = f[j - 1] * scale[j - 1];
      elevated[j] = sum_scaled - j * cf;
      sum_scaled += cf;
    }
    elevated[0] = sum_scaled;
    // Nearest lattice point of remainder 0 (coordinates multiples of d+1).
    int coord_sum = 0;
    for (int i = 0; i < d1; ++i) {
      const int r = static_cast<int>(std::round(down * elevated[i]));
      remainder0[i] = r * d1;
      coord_sum += r;
    }
    // Sort the residuals (as ranks) to find the enclosing simplex.
    std::fill(rank, rank + d1, 0);
    for (int i = 0; i < dim; ++i) {
      const float ri = elevated[i] - remainder0[i];
      for (int j = i + 1; j < d1; ++j) {
        if (ri < elevated[j] - remainder0[j]) {
          ++rank[i];
        } else {
          ++rank[j];
        }
      }
    }
    // Bring the rounded point back onto the hyperplane.
    for (int i = 0; i < d1; ++i) {
      rank[i] += coord_sum;
      if (rank[i] < 0) {
        rank[i] += d1;
        remainder0[i] += d1;
      } else if (rank[i] > dim) {
        rank[i] -= d1;
        remainder0[i] -= d1;
      }
    }
    // Barycentric coordinates of the point in its simplex.
    std::fill(bary, bary + d1 + 1, 0.0f);
    for (int i = 0; i < d1; ++i) {
      const float v = (elevated[i] - remainder0[i]) * down;
      bary[dim - rank[i]] += v;
      bary[dim - rank[i] + 1] -= v;
    }
    bary[0] += 1.0f + bary[d1];
    // The simplex's d+1 vertices: remainder0 plus the canonical offsets.
    for (int r = 0; r < d1; ++r) {
      for (int i = 0; i < dim; ++i) {
        key[i] = static_cast<int>(remainder0[i]) +
            (rank[i] <= dim - r ? r : r - d1);
      }
      const size_t at = static_cast<size_t>(p) * d1 + r;
      vertex_[at] = FindOrInsert(key) + 1;  // +1: row 0 is "absent"
      weight_[at] = bary[r];
    }
  }

  // Neighbours of every vertex along each of the d+1 lattice axes.
  const size_t m = num_vertices_;
  neighbour_lo_.resize(d1 * m);
  neighbour_hi_.resize(d1 * m);
  for (int axis = 0; axis < d1; ++axis) {
    for (size_t v = 0; v < m; ++v) {
      const int* k = &keys_[v * dim];
      for (int i = 0; i < dim; ++i) {
        lo[i] = k[i] - 1;
        hi[i] = k[i] + 1;
      }
      if (axis < dim) {  // the (d+1)-th coordinate is implicit
        lo[axis] = k[axis] + dim;
        hi[axis] = k[axis] - dim;
      }
      neighbour_lo_[axis * m + v] = Find(lo) + 1;
      neighbour_hi_[axis * m + v] = Find(hi) + 1;
    }
  }
}

void PermutohedralLattice::Filter(const float* in, int value_size, float* out,
                                  bool transpose) {
  if (num_points_ == 0 || value_size <= 0) return;
  const int d1 = dim_ + 1;
  const int vs = value_size;
  const size_t rows = static_cast<size_t>(num_vertices_) + 1;
  values_.assign(rows * vs, 0.0f);
  // The blur writes every row of scratch_ but row 0, which must read as 0.
  scratch_.resize(rows * vs);
  std::fill(scratch_.begin(), scratch_.begin() + vs, 0.0f);

  // Splat: scatter each point's values onto its simplex's vertices.
  for (int p = 0; p < num_points_; ++p) {
    const float* src = in + static_cast<size_t>(p) * vs;
    for (int r = 0; r < d1; ++r) {
      const size_t at = static_cast<size_t>(p) * d1 + r;
      float* dst = &values_[static_cast<size_t>(vertex_[at]) * vs];
      const float w = weight_[at];
      for (int c = 0; c < vs; ++c) dst[c] += w * src[c];
    }
  }

  // Blur: [1/2 1 1/2] along each lattice axis in turn. Each axis' blur is
  // symmetric and the slice is the splat's transpose, so reversing the axis
  // order applies W's transpose.
  const int m = num_vertices_;
  for (int step = 0; step < d1; ++step) {
    const int axis = transpose ? d1 - 1 - step : step;
    const int* nlo = &neighbour_lo_[static_cast<size_t>(axis) * m];
    const int* nhi = &neighbour_hi_[static_cast<size_t>(axis) * m];
    const float* old_values = &values_[0];
    float* new_values = &scratch_[0];
#pragma omp parallel for schedule(static)
    for (int v = 0; v < m; ++v) {
      const float* self = old_values + static_cast<size_t>(v + 1) * vs;
      const float* a = old_values + static_cast<size_t>(nlo[v]) * vs;
      const float* b = old_values + static_cast<size_t>(nhi[v]) * vs;
      float* dst = new_values + static_cast<size_t>(v + 1) * vs;
      for (int c = 0; c < vs; ++c) dst[c] = self[c] + 0.5f * (a[c] + b[c]);
    }
    values_.swap(scratch_);
  }

  // Slice: interpolate back at the points. alpha corrects the blur's gain.
  const float alpha = 1.0f / (1.0f + std::pow(2.0f, -dim_));
  const float* blurred = &values_[0];
#pragma omp parallel for schedule(static)
  for (int p = 0; p < num_points_; ++p) {
    float* dst = out + static_cast<size_t>(p) * vs;
    std::fill(dst, dst + vs, 0.0f);
    for (int r = 0; r < d1; ++r) {
      const size_t at = static_cast<size_t>(p) * d1 + r;
      const float* src = blurred + static_cast<size_t>(vertex_[at]) * vs;
      const float w = weight_[at];
      for (int c = 0; c < vs; ++c) dst[c] += w * src[c];
    }
    for (int c = 0; c < vs; ++c) dst[c] *= alpha;
  }
}

void ComputeBilateralFeatures(const float* image, int channels, int height,
    int width, float sigma_xy, float sigma_rgb, float* features) {
  const int dim = 2 + channels;
  const size_t plane = static_cast<size_t>(height) * width;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const size_t i = static_cast<size_t>(y) * width + x;
      float* f = features + i * dim;
      f[0] = x / sigma_xy;
      f[1] = y / sigma_xy;
      for (int c = 0; c < channels; ++c) {
        f[2 + c] = image[c * plane + i] / sigma_rgb;
      }
    }
  }
}

void filterrgbxy(const float* image, int channels, int height, int width,
    const float* values, int value_size, float sigma_xy, float sigma_rgb,
    float* out) {
  const size_t n = static_cast<size_t>(height) * width;
  std::vector<float> features(n * (2 + channels));
  ComputeBilateralFeatures(image, channels, height, width, sigma_xy, sigma_rgb,
                           &features[0]);
  PermutohedralLattice lattice;
  lattice.Init(&features[0], 2 + channels, n);
  std::vector<float> in(n * value_size), filtered(n * value_size);
  for (int c = 0; c < value_size; ++c) {
    for (size_t i = 0; i < n; ++i) in[i * value_size + c] = values[c * n + i];
  }
  lattice.Filter(&in[0], value_size, &filtered[0]);
  for (int c = 0; c < value_size; ++c) {
    for (size_t i = 0; i < n; ++i) {
      out[c * n + i] = filtered[i * value_size + c];
    }
  }
}

}  // namespace caffe
