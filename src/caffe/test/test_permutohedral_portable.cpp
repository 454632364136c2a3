// The lattice as CPUs without AVX2 run it: no gathers, every point through
// the scalar lookups, the compare-and-blend sorting network, 4-lane vectors,
// kernels without FMA. On this project's machines that path is never picked
// at run time, so it is compiled a second time here, in a namespace of its
// own, and checked against the lattice the dispatch picked.
#include <cmath>
#include <vector>

#define RLOSS_PORTABLE_ONLY 1
#define caffe rloss_portable
#include "../util/permutohedral.cpp"  // NOLINT(build/include)
#undef caffe
#undef CAFFE_UTIL_PERMUTOHEDRAL_HPP_

#include "gtest/gtest.h"

#include "caffe/test/test_permutohedral_data.hpp"
#include "caffe/util/permutohedral.hpp"

namespace caffe {

namespace {

typedef rloss_portable::PermutohedralLattice PortableLattice;

// Relative L2 distance of b from a.
double Distance(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (a[i] - b[i]);
    den += static_cast<double>(a[i]) * a[i];
  }
  return std::sqrt(num / den);
}

// Splat, blur and slice on both lattices, already built on the same points:
// the same vertices (the portable path looks every point up one by one, in
// the same order), the same <in, W in> and W in, up to the rounding that FMA
// contraction changes.
template <typename Lattice>
void ExpectSameFiltering(PermutohedralLattice* dispatched, Lattice* portable,
                         int value_size) {
  ASSERT_EQ(dispatched->num_vertices(), portable->num_vertices());
  const int n = dispatched->num_points();
  const std::vector<float> in = MakeValues(value_size * n, 5);
  dispatched->Splat(in.data(), value_size);
  dispatched->Blur();
  portable->Splat(in.data(), value_size);
  portable->Blur();
  const double dot = dispatched->SplatDotBlurred();
  EXPECT_GT(dot, 0);
  EXPECT_NEAR(portable->SplatDotBlurred(), dot, 1e-6 * dot);
  std::vector<float> a(in.size()), b(in.size());
  dispatched->Slice(a.data());
  portable->Slice(b.data());
  EXPECT_LT(Distance(a, b), 1e-5);
  dispatched->Filter(in.data(), value_size, a.data(), true);
  portable->Filter(in.data(), value_size, b.data(), true);
  EXPECT_LT(Distance(a, b), 1e-5);
}

}  // namespace

TEST(PermutohedralPortableTest, TestBilateralMatchesDispatched) {
  const int height = 61, width = 67;  // rows that are not whole vectors
  for (bool noise : {false, true}) {
    const std::vector<float> image = MakeImage(3, height, width, noise);
    for (int value_size : {2, 21}) {
      PermutohedralLattice dispatched;
      PortableLattice portable;
      dispatched.InitBilateral(image.data(), 3, height, width, 20, 10);
      portable.InitBilateral(image.data(), 3, height, width, 20, 10);
      // Enough vertices that cells are shared and revisited.
      EXPECT_GT(dispatched.num_vertices(), 500);
      ExpectSameFiltering(&dispatched, &portable, value_size);
    }
  }
}

// Other dimensions take the general simplex search; from d + 1 > 10 on, no
// cells are cached and every vertex is looked up by its key.
TEST(PermutohedralPortableTest, TestOtherDimensionsMatchDispatched) {
  const int n = 3000;
  for (int dim : {1, 2, 3, 7, 10}) {
    std::vector<float> features = MakeValues(dim * n, 17 + dim);
    for (float& f : features) f = 8 * f - 4;  // in [-4, 4)
    PermutohedralLattice dispatched;
    PortableLattice portable;
    dispatched.Init(features.data(), dim, n);
    portable.Init(features.data(), dim, n);
    EXPECT_GT(dispatched.num_vertices(), dim + 1);
    ExpectSameFiltering(&dispatched, &portable, 9);
  }
}

}  // namespace caffe
