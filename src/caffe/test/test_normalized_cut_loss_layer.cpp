#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layers/normalized_cut_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/permutohedral.hpp"

#include "caffe/test/test_bilateral_loss_util.hpp"
#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

template <typename TypeParam>
class NormalizedCutLossLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  NormalizedCutLossLayerTest()
      : image_(new Blob<Dtype>(2, 3, 4, 5)),
        prob_(new Blob<Dtype>(2, 3, 4, 5)),
        top_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    FillTestImage(image_.get());
    FillTestProb(prob_.get());
    bottom_.push_back(image_.get());
    bottom_.push_back(prob_.get());
    top_vec_.push_back(top_.get());
  }

  LayerParameter Param(float xy, float rgb, float scale = 1) {
    LayerParameter param;
    param.set_name("ncut");
    NormalizedCutLossParameter* p = param.mutable_normalized_cut_loss_param();
    p->set_bi_xy_std(xy);
    p->set_bi_rgb_std(rgb);
    p->set_scale_factor(scale);
    return param;
  }

  Dtype Run(const LayerParameter& param, const vector<Blob<Dtype>*>& bottom) {
    NormalizedCutLossLayer<Dtype> layer(param);
    layer.SetUp(bottom, top_vec_);
    const Dtype loss = layer.Forward(bottom, top_vec_);
    top_->mutable_cpu_diff()[0] = 1;
    vector<bool> down(bottom.size(), false);
    down[1] = true;
    layer.Backward(top_vec_, down, bottom);
    return loss;
  }

  // The definition restated with filterrgbxy: (1/N) sum_n,k
  // x'W(R - x) / (W R)'x, x = S (.) R.
  double Expected(float xy, float rgb) {
    const Blob<Dtype>& image = *image_;
    const Blob<Dtype>& prob = *prob_;
    const int N = image.num(), C = image.channels(), K = prob.channels();
    const int hw = image.height() * image.width();
    const std::vector<float> roi = TestRuleRoi(image);
    double loss = 0;
    for (int n = 0; n < N; ++n) {
      std::vector<float> img(image.cpu_data() + n * C * hw,
                             image.cpu_data() + (n + 1) * C * hw);
      std::vector<float> x(K * hw), wx(K * hw), r(roi.begin() + n * hw,
          roi.begin() + (n + 1) * hw), d(hw);
      for (int j = 0; j < K * hw; ++j) {
        x[j] = prob.cpu_data()[n * K * hw + j] * r[j % hw];
      }
      filterrgbxy(img.data(), C, image.height(), image.width(), x.data(), K,
                  xy, rgb, wx.data());
      filterrgbxy(img.data(), C, image.height(), image.width(), r.data(), 1,
                  xy, rgb, d.data());
      for (int k = 0; k < K; ++k) {
        double cut = 0, assoc = 0;
        for (int i = 0; i < hw; ++i) {
          cut += x[k * hw + i] * (d[i] - wx[k * hw + i]);
          assoc += x[k * hw + i] * d[i];
        }
        loss += cut / assoc / N;
      }
    }
    return loss;
  }

  shared_ptr<Blob<Dtype> > image_;
  shared_ptr<Blob<Dtype> > prob_;
  shared_ptr<Blob<Dtype> > top_;
  vector<Blob<Dtype>*> bottom_;
  vector<Blob<Dtype>*> top_vec_;
};

TYPED_TEST_CASE(NormalizedCutLossLayerTest, TestDtypesAndDevices);

TYPED_TEST(NormalizedCutLossLayerTest, TestSetUp) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  NormalizedCutLossLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_vec_);
  EXPECT_EQ(this->top_->num_axes(), 0);
  EXPECT_EQ(layer.loss(0), 1);
  EXPECT_EQ(param.normalized_cut_loss_param().bi_xy_std(), 15);
  EXPECT_EQ(param.normalized_cut_loss_param().bi_rgb_std(), 40);
}

TYPED_TEST(NormalizedCutLossLayerTest, TestForwardMatchesDefinition) {
  for (float xy : {3.0f, 100.0f}) {
    const double expected = this->Expected(xy, 30);
    const double loss = this->Run(this->Param(xy, 30), this->bottom_);
    EXPECT_NEAR(loss, expected, 1e-5 * std::fabs(expected));
    // K classes, each term a share of its association in [0, 1].
    EXPECT_GT(loss, 0);
    EXPECT_LT(loss, 3);
  }
}

// A diagonal kernel (tiny sigmas): W = diag(c), c_i the lattice's self
// weight of pixel i (W 1), so the loss is sum_k sum_i c x(R - x) / sum_i c x R.
TYPED_TEST(NormalizedCutLossLayerTest, TestDiagonalKernelClosedForm) {
  const std::vector<float> roi = TestRuleRoi(*this->image_);
  const int N = 2, C = 3, K = 3, hw = 20;
  double expected = 0;
  for (int n = 0; n < N; ++n) {
    std::vector<float> img(this->image_->cpu_data() + n * C * hw,
                           this->image_->cpu_data() + (n + 1) * C * hw);
    std::vector<float> ones(hw, 1), c(hw);
    filterrgbxy(img.data(), C, 4, 5, ones.data(), 1, 0.01f, 0.01f, c.data());
    for (int k = 0; k < K; ++k) {
      double num = 0, den = 0;
      for (int i = 0; i < hw; ++i) {
        const double r = roi[n * hw + i];
        const double x = this->prob_->cpu_data()[(n * K + k) * hw + i] * r;
        num += c[i] * x * (r - x);
        den += c[i] * x * r;
      }
      expected += num / den / N;
    }
  }
  EXPECT_NEAR(this->Run(this->Param(0.01, 0.01), this->bottom_), expected,
              1e-5 * expected);
}

// The gradient is exact (W' from the lattice's transpose), so the checker
// passes for any kernel, not only a symmetric one.
TYPED_TEST(NormalizedCutLossLayerTest, TestGradient) {
  typedef typename TypeParam::Dtype Dtype;
  for (float xy : {2.0f, 50.0f}) {
    NormalizedCutLossLayer<Dtype> layer(this->Param(xy, 60));
    GradientChecker<Dtype> checker(1e-2, 2e-3, 1701);
    checker.CheckGradientExhaustive(&layer, this->bottom_, this->top_vec_, 1);
  }
}

TYPED_TEST(NormalizedCutLossLayerTest, TestGradientScaleFactor) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> image(1, 3, 7, 6), prob(1, 2, 7, 6);
  FillTestImage(&image);
  FillTestProb(&prob);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&image);
  bottom.push_back(&prob);
  NormalizedCutLossLayer<Dtype> layer(this->Param(3, 60, 0.5));
  GradientChecker<Dtype> checker(1e-2, 2e-3, 1701);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 1);
}

TYPED_TEST(NormalizedCutLossLayerTest, TestRoi) {
  typedef typename TypeParam::Dtype Dtype;
  const Dtype rule = this->Run(this->Param(5, 20), this->bottom_);
  // Row 0 of image 0 is padding: no gradient there, some elsewhere.
  double inside = 0;
  for (int k = 0; k < 3; ++k) {
    for (int x = 0; x < 5; ++x) {
      EXPECT_EQ(this->prob_->diff_at(0, k, 0, x), 0);
      inside += std::fabs(this->prob_->diff_at(0, k, 1, x));
    }
  }
  EXPECT_GT(inside, 0);
  // The same ROI given as a bottom gives the same loss.
  Blob<Dtype> roi(2, 1, 4, 5);
  const std::vector<float> r = TestRuleRoi(*this->image_);
  for (int i = 0; i < roi.count(); ++i) roi.mutable_cpu_data()[i] = r[i];
  vector<Blob<Dtype>*> bottom = this->bottom_;
  bottom.push_back(&roi);
  EXPECT_EQ(this->Run(this->Param(5, 20), bottom), rule);
  // An image with nothing inside contributes nothing: the batch's loss is
  // image 0's over N = 2, and image 1 gets no gradient.
  for (int i = 20; i < 40; ++i) roi.mutable_cpu_data()[i] = 0;
  const Dtype both = this->Run(this->Param(5, 20), bottom);
  for (int i = 60; i < 120; ++i) EXPECT_EQ(this->prob_->cpu_diff()[i], 0);
  Blob<Dtype> image0(1, 3, 4, 5), prob0(1, 3, 4, 5);
  caffe_copy(60, this->image_->cpu_data(), image0.mutable_cpu_data());
  caffe_copy(60, this->prob_->cpu_data(), prob0.mutable_cpu_data());
  vector<Blob<Dtype>*> one;
  one.push_back(&image0);
  one.push_back(&prob0);
  EXPECT_NEAR(both, this->Run(this->Param(5, 20), one) / 2, 1e-6);
}

TYPED_TEST(NormalizedCutLossLayerTest, TestBadParamsDie) {
  typedef typename TypeParam::Dtype Dtype;
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  NormalizedCutLossLayer<Dtype> layer(this->Param(0, 20));
  EXPECT_DEATH(layer.SetUp(this->bottom_, this->top_vec_),
               "NormalizedCutLoss layer 'ncut': bi_xy_std is 0; set "
               "normalized_cut_loss_param");
  NormalizedCutLossLayer<Dtype> bad_scale(this->Param(5, 20, 2));
  EXPECT_DEATH(bad_scale.SetUp(this->bottom_, this->top_vec_),
               "scale_factor is 2");
}

}  // namespace caffe
