#ifndef RLOSS_BENCH_PUBLISHED_HPP_
#define RLOSS_BENCH_PUBLISHED_HPP_

// The published DenseCRF loss layer's algorithm, restated for the benchmark
// as the baseline: Krähenbühl's permutohedral lattice (short keys, a growing
// open-addressing table, neighbours found at build time), built once per
// image, then one value_size-1 filtering per class with its buffers
// allocated per call. Nothing here is shipped in the layer.

#include <stdint.h>

#include <vector>

namespace rloss_bench {

class PublishedLattice {
 public:
  void Init(const float* features, int dim, int num_points);
  /// out = W in for value_size interleaved channels; allocates per call.
  void Compute(const float* in, int value_size, float* out) const;
  int num_vertices() const { return num_vertices_; }

 private:
  int Find(const int16_t* key, bool create);
  void Grow();

  int dim_ = 0, num_points_ = 0, num_vertices_ = 0;
  std::vector<int> offset_;           // num_points x (dim+1) vertex indices
  std::vector<float> barycentric_;    // num_points x (dim+1)
  std::vector<int> blur_lo_, blur_hi_;  // (dim+1) x num_vertices
  std::vector<int16_t> keys_;         // capacity x dim
  std::vector<int> table_;            // capacity, -1 empty
  int capacity_ = 0;
};

/// The published layer's forward for one image: loss = -sum_k S_k' W S_k
/// with S zeroed outside the ROI (pixels whose channels all truncate to 0),
/// grad = -2 R (.) W S. image C x H x W, prob and grad K x H x W (planar).
/// times[0] += lattice build (features included), times[1] += filtering.
double PublishedDenseCRF(const float* image, int channels, int height,
    int width, const float* prob, int classes, float sigma_xy,
    float sigma_rgb, float* grad, double* times);

}  // namespace rloss_bench

#endif  // RLOSS_BENCH_PUBLISHED_HPP_
