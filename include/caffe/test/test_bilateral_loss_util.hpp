#ifndef CAFFE_TEST_TEST_BILATERAL_LOSS_UTIL_HPP_
#define CAFFE_TEST_TEST_BILATERAL_LOSS_UTIL_HPP_

#include <cmath>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/filler.hpp"

namespace caffe {

// Inputs shared by the tests of the bilateral losses (DenseCRFLoss,
// NormalizedCutLoss).

// Intensities in [10, 250], with the first row of image 0 zero-padded
// (values in (-1, 1) truncate to 0): that row is outside the ROI.
template <typename Dtype>
void FillTestImage(Blob<Dtype>* image) {
  FillerParameter fp;
  fp.set_min(10);
  fp.set_max(250);
  UniformFiller<Dtype>(fp).Fill(image);
  Dtype* data = image->mutable_cpu_data();
  for (int c = 0; c < image->channels(); ++c) {
    for (int x = 0; x < image->width(); ++x) {
      data[image->offset(0, c, 0, x)] = (x % 3 - 1) * Dtype(0.7);
    }
  }
}

// Softmax of Gaussian scores: a distribution over K at every pixel.
template <typename Dtype>
void FillTestProb(Blob<Dtype>* prob) {
  FillerParameter fp;
  fp.set_std(2);
  GaussianFiller<Dtype>(fp).Fill(prob);
  Dtype* p = prob->mutable_cpu_data();
  const int K = prob->channels(), hw = prob->height() * prob->width();
  for (int n = 0; n < prob->num(); ++n) {
    for (int i = 0; i < hw; ++i) {
      Dtype sum = 0;
      for (int k = 0; k < K; ++k) {
        Dtype& v = p[(n * K + k) * hw + i];
        v = std::exp(v);
        sum += v;
      }
      for (int k = 0; k < K; ++k) p[(n * K + k) * hw + i] /= sum;
    }
  }
}

// The ROI rule: inside unless every channel truncates to 0 (N x h x w).
template <typename Dtype>
std::vector<float> TestRuleRoi(const Blob<Dtype>& image) {
  const int hw = image.height() * image.width();
  std::vector<float> roi(image.num() * hw, 0);
  for (int n = 0; n < image.num(); ++n) {
    for (int c = 0; c < image.channels(); ++c) {
      for (int i = 0; i < hw; ++i) {
        const int at = (n * image.channels() + c) * hw + i;
        if (std::trunc(image.cpu_data()[at]) != 0) roi[n * hw + i] = 1;
      }
    }
  }
  return roi;
}

}  // namespace caffe

#endif  // CAFFE_TEST_TEST_BILATERAL_LOSS_UTIL_HPP_
