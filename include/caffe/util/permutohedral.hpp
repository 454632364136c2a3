#ifndef CAFFE_UTIL_PERMUTOHEDRAL_HPP_
#define CAFFE_UTIL_PERMUTOHEDRAL_HPP_

#include <vector>

namespace caffe {

/**
 * @brief Gaussian filtering in a d-dimensional feature space on the
 *        permutohedral lattice (Adams, Baek and Davis, 2010), with the
 *        scaling of Krähenbühl's DenseCRF code, so that filtered values match
 *        the published DenseCRF loss layer.
 *
 * Filter() computes out_i = sum_j W_ij in_j, where W_ij approximates
 * exp(-|f_i - f_j|^2 / 2) for features f already divided by their standard
 * deviations (self term included). Standalone: no Caffe types.
 *
 * Init() builds the lattice once per feature set; Filter() can then be called
 * for any number of value channels at once. Buffers are kept between calls,
 * so a lattice reused for same-sized inputs does not allocate.
 */
class PermutohedralLattice {
 public:
  PermutohedralLattice() : dim_(0), num_points_(0), num_vertices_(0) {}

  /// features: num_points x dim, row-major.
  void Init(const float* features, int dim, int num_points);

  /// in, out: num_points x value_size, row-major (channels interleaved);
  /// they must not overlap. Parallel (OpenMP) over vertices and points.
  /// transpose: apply W's transpose instead. The lattice's W is symmetric
  /// only up to a few percent (the per-axis blurs do not commute), so exact
  /// gradients of x' W y need both.
  void Filter(const float* in, int value_size, float* out,
              bool transpose = false);

  int dim() const { return dim_; }
  int num_points() const { return num_points_; }
  /// Lattice vertices touched by the points: the size of the blur's domain.
  int num_vertices() const { return num_vertices_; }

 private:
  /// The vertex with this key, or -1 with *slot the free slot to put it in.
  int Probe(const int* key, unsigned int* slot) const;
  int Find(const int* key) const;
  int FindOrInsert(const int* key);

  int dim_;
  int num_points_;
  int num_vertices_;
  // For each point, its dim+1 enclosing vertices and barycentric weights.
  std::vector<int> vertex_;
  std::vector<float> weight_;
  // For each blur axis and vertex, the neighbour indices (+1; 0 = absent).
  std::vector<int> neighbour_lo_;
  std::vector<int> neighbour_hi_;
  // Hash table of vertex keys (dim coordinates each) -> vertex index.
  std::vector<int> keys_;
  std::vector<int> table_;
  unsigned int table_mask_;
  // Vertex values (row 0 stays zero: it stands for absent neighbours).
  std::vector<float> values_;
  std::vector<float> scratch_;
  // Init's per-point work arrays.
  std::vector<float> work_;
  std::vector<int> iwork_;
};

/// Per-pixel features (x/sigma_xy, y/sigma_xy, I_1/sigma_rgb, ...,
/// I_C/sigma_rgb) of a planar C x H x W image: features is H*W x (2 + C).
void ComputeBilateralFeatures(const float* image, int channels, int height,
    int width, float sigma_xy, float sigma_rgb, float* features);

/**
 * @brief One-call bilateral filter of planar values (value_size x H x W) with
 *        the Gaussian over (x, y, colour) of a planar C x H x W image; out has
 *        the shape of values. Builds a lattice per call: use
 *        PermutohedralLattice directly to reuse one.
 */
void filterrgbxy(const float* image, int channels, int height, int width,
    const float* values, int value_size, float sigma_xy, float sigma_rgb,
    float* out);

}  // namespace caffe

#endif  // CAFFE_UTIL_PERMUTOHEDRAL_HPP_
