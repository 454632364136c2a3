#ifndef CAFFE_TEST_TEST_PERMUTOHEDRAL_DATA_HPP_
#define CAFFE_TEST_TEST_PERMUTOHEDRAL_DATA_HPP_

#include <cmath>
#include <vector>

namespace caffe {

// Inputs for the lattice's tests, shared by test_permutohedral*.cpp.

// A smooth C-channel test image in [28, 228], or uniform noise.
inline std::vector<float> MakeImage(int channels, int height, int width,
                                    bool noise, unsigned int seed = 7) {
  std::vector<float> image(channels * height * width);
  for (int c = 0; c < channels; ++c) {
    for (int y = 0; y < height; ++y) {
      for (int x = 0; x < width; ++x) {
        seed = seed * 1103515245u + 12345u;
        image[(c * height + y) * width + x] = noise
            ? (seed >> 8) % 256
            : 128 + 100 * std::sin(x / 7.0 + c) * std::cos(y / 5.0);
      }
    }
  }
  return image;
}

// count pseudo-random values in [0, 1).
inline std::vector<float> MakeValues(int count, unsigned int seed = 3) {
  std::vector<float> values(count);
  for (int i = 0; i < count; ++i) {
    seed = seed * 1103515245u + 12345u;
    values[i] = ((seed >> 8) % 1000) / 1000.0f;
  }
  return values;
}

}  // namespace caffe

#endif  // CAFFE_TEST_TEST_PERMUTOHEDRAL_DATA_HPP_
