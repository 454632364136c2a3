#ifndef CAFFE_UTIL_PERMUTOHEDRAL_HPP_
#define CAFFE_UTIL_PERMUTOHEDRAL_HPP_

#include <cstdlib>
#include <new>
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
 * Init() builds the lattice once per feature set. Filter() is Splat(), Blur()
 * and Slice(), which are public so that a caller can stop on the lattice:
 * <in, W in> = SplatDotBlurred() needs no slice. Call them in that order
 * after Init(); Blur() and Slice() use the last Splat()'s values. Values are
 * planar (value_size planes of num_points floats, as Caffe stores blobs) and
 * are filtered all at once. Buffers are kept between calls: a lattice reused
 * for same-sized inputs does not allocate. Loops run in OpenMP parallel
 * regions unless called from inside one; results do not depend on the thread
 * count.
 */
class PermutohedralLattice {
 public:
  PermutohedralLattice();

  /// features: planar, dim planes of num_points floats (feature j of point i
  /// at features[j * num_points + i], as Caffe stores an image), each within
  /// +-kMaxFeature.
  void Init(const float* features, int dim, int num_points);
  /// Init on the bilateral features of a planar C x H x W image, the ones
  /// ComputeBilateralFeatures makes (to the bit), made as they are read: no
  /// feature planes are written or kept.
  void InitBilateral(const float* image, int channels, int height, int width,
                     float sigma_xy, float sigma_rgb);
  /// Beyond this, float coordinates on the lattice are coarser than a
  /// quarter unit (the simplex search goes wrong) and further out its
  /// integer keys overflow; callers check it.
  static const int kMaxFeature = 100000;

  /// out = W in (W' in with transpose) for planar in, out; they must not
  /// overlap. The lattice's W is symmetric only up to a few percent (the
  /// per-axis blurs do not commute), so exact gradients of x' W y need both.
  void Filter(const float* in, int value_size, float* out,
              bool transpose = false);

  /// Accumulates planar values, each point's scaled by point_weight[i] if
  /// given, onto the lattice vertices.
  void Splat(const float* in, int value_size,
             const float* point_weight = NULL);
  /// Blurs the splatted values along every lattice axis; transpose reverses
  /// the axis order, which applies W'.
  void Blur(bool transpose = false);
  /// out = scale * point_weight[i] * (W in)_i for every point (planar).
  void Slice(float* out, float scale = 1,
             const float* point_weight = NULL) const;
  /// sum_c <splatted_c, blurred_c> * alpha = <in, W in> (point weights
  /// included), computed on the vertices.
  double SplatDotBlurred() const;

  int dim() const { return dim_; }
  int num_points() const { return num_points_; }
  /// Lattice vertices touched by the points: the size of the blur's domain.
  int num_vertices() const { return num_vertices_; }
  /// Bytes held in buffers (for memory reports).
  size_t memory_bytes() const;

  /// What the build reads: feature planes (Init) or an image whose bilateral
  /// features it makes as it reads them (InitBilateral). Defined in the .cpp.
  struct FeatureSource;

 private:
  /// Allocates on cache lines: vertex rows are whole AVX vectors, and a
  /// vector that straddles two lines costs a split load or store.
  template <typename T>
  struct LineAllocator {
    typedef T value_type;
    LineAllocator() {}
    template <typename U>
    LineAllocator(const LineAllocator<U>&) {}  // NOLINT(runtime/explicit)
    T* allocate(size_t n) {
      void* p = NULL;
      if (posix_memalign(&p, 64, n * sizeof(T)) != 0) throw std::bad_alloc();
      return static_cast<T*>(p);
    }
    void deallocate(T* p, size_t) { free(p); }
    bool operator==(const LineAllocator&) const { return true; }
    bool operator!=(const LineAllocator&) const { return false; }
  };
  typedef std::vector<float, LineAllocator<float> > AlignedFloats;
  typedef std::vector<int, LineAllocator<int> > AlignedInts;

  /// Open-addressing hash table of integer keys of one length -> 0, 1, ...
  /// in order of insertion. Reset keeps the capacity.
  class KeyTable {
   public:
    KeyTable() : key_size_(0), sparsity_(1), mask_(0), shift_(32), size_(0) {}
    /// The table grows to keep its load below 2^-sparsity.
    void Reset(int key_size, int sparsity = 1);
    /// The key's index, or -1; h is the key's hash (HashKey in the .cpp).
    template <int kSize = 0>
    int Find(const int* key, unsigned int h) const;
    /// The key's index, inserting it (as index size()) if absent.
    template <int kSize = 0>
    int FindOrInsert(const int* key, unsigned int h);
    int size() const { return size_; }
    const int* key(int index) const { return &keys_[index * key_size_]; }
    unsigned int hash(int index) const { return hashes_[index]; }
    /// The open-addressing slots, for block lookups: (index or -1, hash)
    /// pairs of ints, slot_mask() + 1 of them; a hash h's home slot is
    /// (h * kHomeFactor) >> slot_shift().
    const int* slots() const {
      return reinterpret_cast<const int*>(slot_.data());
    }
    unsigned int slot_mask() const { return mask_; }
    int slot_shift() const { return shift_; }
    size_t bytes() const;

   private:
    void Grow();
    int key_size_;
    int sparsity_;
    unsigned int mask_;
    int shift_;  // 32 - log2(slot count)
    int size_;
    std::vector<int> keys_;           // size_ x key_size_
    // A slot's index (-1: empty) and the full hash of its key, side by side
    // so that a probe reads one cache line.
    struct Slot {
      int index;
      unsigned int hash;
    };
    std::vector<Slot> slot_;
    std::vector<unsigned int> hashes_;  // each index's hash
  };

  void Build(const FeatureSource& input, int dim, int num_points);

  template <int kDim>
  void FindNeighbours();  // fills neighbour_ (kDim 0: dim_)

  int dim_;
  int num_points_;
  int num_vertices_;
  // For each point, its dim+1 enclosing vertices (+1: row 0 is "absent")
  // and barycentric weights.
  std::vector<int> vertex_;
  std::vector<float> weight_;
  // For each blur axis and vertex, the neighbour rows (lo, hi interleaved).
  std::vector<int> neighbour_;
  // Vertex keys (dim coordinates) -> vertex index.
  KeyTable vertices_;
  AlignedInts keys_scratch_;  // per thread, whole cache lines: neighbour keys

  // Builds the simplices of a range of points with tables of its own.
  struct Builder {
    void Run(const FeatureSource& input, int dim, int begin, int end,
             int* vertex, float* weight);
    template <int kDim>
    void RunFor(const FeatureSource& input, int dyn_dim, int begin, int end,
                int* vertex, float* weight);
    KeyTable vertices;
    // Remainder-0 points ("cells") -> cell index, and for each cell the
    // vertices around it (+1; 0 = not looked up yet), indexed by which
    // coordinates of the point step down (see Run).
    KeyTable cells;
    std::vector<int> cell_vertex;
    std::vector<int> global;  // this builder's vertices in the merged table
    std::vector<unsigned int> factor;     // KeyFactor(i)
    std::vector<unsigned int> step_down;  // per mask: its hash offset
    AlignedFloats block;  // one block of points, structure of arrays
    std::vector<int> iblock;
  };
  std::vector<Builder> builders_;
  // Vertex values: (num_vertices + 1) rows of stride_ floats (row 0 is 0).
  int value_size_;
  int stride_;
  AlignedFloats splat_;      // the splat (chunk 0, then the sum), kept
  AlignedFloats partial_;    // later chunks' splats (one thread: one, reused)
  AlignedFloats blurred_;
  AlignedFloats scratch_;
  // Per-thread tiles of points, interleaved; scratch, so Slice stays const.
  mutable AlignedFloats transposed_;
};

/// Per-pixel features (x/sigma_xy, y/sigma_xy, I_1/sigma_rgb, ...,
/// I_C/sigma_rgb) of a planar C x H x W image, planar as Init takes them:
/// features is (2 + C) x H x W.
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
