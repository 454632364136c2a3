#ifndef CAFFE_TEST_TEST_REFERENCE_HPP_
#define CAFFE_TEST_TEST_REFERENCE_HPP_

#include <dirent.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>  // NOLINT(readability/streams)
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace caffe {

// The published DenseCRF loss layer's values on a few inputs
// (../shared/reference/densecrf_loss, unpacked to one folder of .npy files a
// case by tools/export_reference.py when `make test` runs), for the layer's
// and the lattice's tests. Needs no Caffe, so that the lattice's tests can
// run them where there is no Caffe (on aarch64, under qemu).

// Loads a little-endian .npy array (float32, float64 or uint8) as doubles.
inline bool LoadNpy(const std::string& path, std::vector<int>* shape,
                    std::vector<double>* data) {
  std::ifstream in(path.c_str(), std::ios::binary);
  if (!in) return false;
  char magic[8];
  in.read(magic, 8);
  if (std::string(magic + 1, 5) != "NUMPY") return false;
  unsigned int header_len = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    in.read(reinterpret_cast<char*>(b), 2);
    header_len = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    in.read(reinterpret_cast<char*>(b), 4);
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24);
  }
  std::string header(header_len, ' ');
  in.read(&header[0], header_len);
  if (!in) return false;
  const size_t descr_at = header.find("'descr'");
  if (descr_at == std::string::npos || descr_at + 13 > header.size()) {
    return false;
  }
  const std::string descr = header.substr(descr_at + 10, 3);
  if (header.find("'fortran_order': False") == std::string::npos) return false;
  shape->clear();
  const size_t key = header.find("'shape'");
  if (key == std::string::npos) return false;
  size_t pos = header.find('(', key);
  if (pos == std::string::npos) return false;
  size_t count = 1;
  for (++pos; pos < header.size() && header[pos] != ')';) {
    if (header[pos] == ' ' || header[pos] == ',') {
      ++pos;
      continue;
    }
    if (header[pos] < '0' || header[pos] > '9') return false;  // malformed
    const int d = std::atoi(header.c_str() + pos);
    shape->push_back(d);
    count *= d;
    while (header[pos] >= '0' && header[pos] <= '9') ++pos;
  }
  if (pos >= header.size()) return false;
  data->resize(count);
  if (descr == "f4'" || descr == "<f4") {
    std::vector<float> raw(count);
    in.read(reinterpret_cast<char*>(raw.data()), count * 4);
    for (size_t i = 0; i < count; ++i) (*data)[i] = raw[i];
  } else if (descr == "f8'" || descr == "<f8") {
    in.read(reinterpret_cast<char*>(data->data()), count * 8);
  } else if (descr == "u1'" || descr == "|u1") {
    std::vector<unsigned char> raw(count);
    in.read(reinterpret_cast<char*>(raw.data()), count);
    for (size_t i = 0; i < count; ++i) (*data)[i] = raw[i];
  } else {
    return false;
  }
  return static_cast<bool>(in);
}

struct ReferenceCase {
  std::string name;
  std::vector<int> image_shape, prob_shape;  // N x C x H x W, N x K x H x W
  std::vector<double> image, prob, grad;     // grad: d loss / d prob
  double loss, sigma_xy, sigma_rgb;
};

// Every case under dir, by name. False, with *failed naming the file, where
// one does not load.
inline bool LoadReferenceCases(const std::string& dir,
                               std::vector<ReferenceCase>* cases,
                               std::string* failed) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (const dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') names.push_back(e->d_name);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  cases->clear();
  for (size_t i = 0; i < names.size(); ++i) {
    ReferenceCase c;
    c.name = names[i];
    const std::string base = dir + "/" + names[i] + "/";
    std::vector<int> shape;
    std::vector<double> loss, xy, rgb;
    const char* file = NULL;
    if (!LoadNpy(base + "image.npy", &c.image_shape, &c.image)) {
      file = "image.npy";
    } else if (!LoadNpy(base + "segmentation.npy", &c.prob_shape, &c.prob)) {
      file = "segmentation.npy";
    } else if (!LoadNpy(base + "grad.npy", &shape, &c.grad)) {
      file = "grad.npy";
    } else if (!LoadNpy(base + "loss.npy", &shape, &loss)) {
      file = "loss.npy";
    } else if (!LoadNpy(base + "bi_xy_std.npy", &shape, &xy)) {
      file = "bi_xy_std.npy";
    } else if (!LoadNpy(base + "bi_rgb_std.npy", &shape, &rgb)) {
      file = "bi_rgb_std.npy";
    }
    if (file) {
      *failed = base + file;
      return false;
    }
    c.loss = loss[0];
    c.sigma_xy = xy[0];
    c.sigma_rgb = rgb[0];
    cases->push_back(c);
  }
  return true;
}

// The cases under RLOSS_REFERENCE_DIR, for a test to check. False where
// there are none to check: with a note where the folder is unset or missing
// (no ../shared), as a test failure where it does not load.
inline bool ReferenceCasesToCheck(std::vector<ReferenceCase>* cases) {
  const char* dir = std::getenv("RLOSS_REFERENCE_DIR");
  DIR* d = dir ? opendir(dir) : NULL;
  if (!d) {
    std::printf("[  SKIPPED ] RLOSS_REFERENCE_DIR is not set or not a folder:"
                " the published reference values (../shared) are absent\n");
    return false;
  }
  closedir(d);
  std::string failed;
  if (!LoadReferenceCases(dir, cases, &failed)) {
    ADD_FAILURE() << "cannot read " << failed;
    return false;
  }
  if (cases->empty()) ADD_FAILURE() << "no reference cases in " << dir;
  return !cases->empty();
}

// |got - want| / |want| (L2) over want.size() values.
template <typename T>
double RelativeError(const T* got, const std::vector<double>& want) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  return std::sqrt(err / norm);
}

}  // namespace caffe

#endif  // CAFFE_TEST_TEST_REFERENCE_HPP_
