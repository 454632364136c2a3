#include <algorithm>
#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/densecrf_loss_layer.hpp"
#include "caffe/util/permutohedral.hpp"

#include "caffe/test/test_bilateral_loss_util.hpp"
#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/test/test_reference.hpp"

namespace caffe {

template <typename TypeParam>
class DenseCRFLossLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  DenseCRFLossLayerTest()
      : image_(new Blob<Dtype>(2, 3, 5, 6)),
        prob_(new Blob<Dtype>(2, 3, 5, 6)),
        top_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    FillImage(image_.get());
    FillProb(prob_.get());
    bottom_.push_back(image_.get());
    bottom_.push_back(prob_.get());
    top_vec_.push_back(top_.get());
  }

  void FillImage(Blob<Dtype>* image) { FillTestImage(image); }
  void FillProb(Blob<Dtype>* prob) { FillTestProb(prob); }

  // A filled image and probabilities, owned by the fixture, as bottoms.
  vector<Blob<Dtype>*> MakeBottom(int num, int channels, int classes,
                                  int height, int width) {
    owned_.push_back(shared_ptr<Blob<Dtype> >(
        new Blob<Dtype>(num, channels, height, width)));
    FillImage(owned_.back().get());
    owned_.push_back(shared_ptr<Blob<Dtype> >(
        new Blob<Dtype>(num, classes, height, width)));
    FillProb(owned_.back().get());
    vector<Blob<Dtype>*> bottom;
    bottom.push_back(owned_[owned_.size() - 2].get());
    bottom.push_back(owned_.back().get());
    return bottom;
  }

  LayerParameter Param(float xy, float rgb, float scale = 1) {
    LayerParameter param;
    param.set_name("densecrf_loss");
    param.add_bottom("data");
    param.add_bottom("prob");
    param.mutable_densecrf_loss_param()->set_bi_xy_std(xy);
    param.mutable_densecrf_loss_param()->set_bi_rgb_std(rgb);
    param.mutable_densecrf_loss_param()->set_scale_factor(scale);
    return param;
  }

  // Loss and gradient (for top diff top_diff) of a fresh layer.
  Dtype Run(const LayerParameter& param, const vector<Blob<Dtype>*>& bottom,
            Dtype top_diff = 1) {
    DenseCRFLossLayer<Dtype> layer(param);
    layer.SetUp(bottom, top_vec_);
    const Dtype loss = layer.Forward(bottom, top_vec_);
    top_->mutable_cpu_diff()[0] = top_diff;
    vector<bool> down(bottom.size(), false);
    down[1] = true;
    layer.Backward(top_vec_, down, bottom);
    return loss;
  }

  // The layer's definition restated with filterrgbxy: loss and gradient for
  // ROI roi (N x h x w, 1 inside), top diff 1.
  double Expected(const Blob<Dtype>& image, const Blob<Dtype>& prob,
                  const std::vector<float>& roi, float xy, float rgb,
                  std::vector<double>* grad) {
    const int N = image.num(), C = image.channels(), K = prob.channels();
    const int hw = image.height() * image.width();
    grad->assign(prob.count(), 0);
    double loss = 0;
    for (int n = 0; n < N; ++n) {
      std::vector<float> img(image.cpu_data() + n * C * hw,
                             image.cpu_data() + (n + 1) * C * hw);
      std::vector<float> x(K * hw), wx(K * hw);
      for (int k = 0; k < K; ++k) {
        for (int i = 0; i < hw; ++i) {
          x[k * hw + i] =
              prob.cpu_data()[(n * K + k) * hw + i] * roi[n * hw + i];
        }
      }
      filterrgbxy(img.data(), C, image.height(), image.width(), x.data(), K,
                  xy, rgb, wx.data());
      for (int j = 0; j < K * hw; ++j) {
        loss -= static_cast<double>(x[j]) * wx[j] / N;
        (*grad)[n * K * hw + j] = -2.0 * wx[j] * roi[n * hw + j % hw] / N;
      }
    }
    return loss;
  }

  std::vector<float> RuleRoi(const Blob<Dtype>& image) {
    return TestRuleRoi(image);
  }

  void ExpectMatchesDefinition(float xy, float rgb, Dtype top_diff) {
    const Dtype loss = Run(Param(xy, rgb), bottom_, top_diff);
    std::vector<double> grad;
    const double expected = Expected(*image_, *prob_, RuleRoi(*image_), xy,
                                     rgb, &grad);
    EXPECT_NEAR(loss, expected, 1e-5 * std::fabs(expected));
    EXPECT_NEAR(top_->cpu_data()[0], expected, 1e-5 * std::fabs(expected));
    for (int i = 0; i < prob_->count(); ++i) {
      EXPECT_NEAR(prob_->cpu_diff()[i], top_diff * grad[i],
                  1e-5 * (1 + std::fabs(grad[i])));
    }
  }

  shared_ptr<Blob<Dtype> > image_;
  shared_ptr<Blob<Dtype> > prob_;
  shared_ptr<Blob<Dtype> > top_;
  vector<Blob<Dtype>*> bottom_;
  vector<Blob<Dtype>*> top_vec_;
  vector<shared_ptr<Blob<Dtype> > > owned_;
};

TYPED_TEST_CASE(DenseCRFLossLayerTest, TestDtypesAndDevices);

TYPED_TEST(DenseCRFLossLayerTest, TestSetUp) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  DenseCRFLossLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_vec_);
  EXPECT_EQ(this->top_->num_axes(), 0);
  EXPECT_EQ(layer.loss(0), 1);  // a loss layer weighs 1 by default
  EXPECT_EQ(param.densecrf_loss_param().bi_xy_std(), 15);
  EXPECT_EQ(param.densecrf_loss_param().bi_rgb_std(), 40);
  EXPECT_EQ(param.densecrf_loss_param().scale_factor(), 1);
}

TYPED_TEST(DenseCRFLossLayerTest, TestForwardBackwardMatchDefinition) {
  this->ExpectMatchesDefinition(3, 30, 1);
  this->ExpectMatchesDefinition(100, 15, 0.25);  // top diff scales the gradient
}

// With tiny sigmas no two pixels share lattice vertices: W is diagonal, so
// the published gradient -2 W S is the exact gradient and can be checked.
TYPED_TEST(DenseCRFLossLayerTest, TestGradientDiagonalKernel) {
  typedef typename TypeParam::Dtype Dtype;
  DenseCRFLossLayer<Dtype> layer(this->Param(0.01, 0.01));
  GradientChecker<Dtype> checker(1e-2, 1e-3, 1701);
  checker.CheckGradientExhaustive(&layer, this->bottom_, this->top_vec_, 1);
}

TYPED_TEST(DenseCRFLossLayerTest, TestGradientScaleFactorDiagonalKernel) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom = this->MakeBottom(2, 3, 2, 8, 7);
  for (float scale : {0.5f, 0.7f}) {
    DenseCRFLossLayer<Dtype> layer(this->Param(0.01, 0.01, scale));
    GradientChecker<Dtype> checker(1e-2, 1e-3, 1701);
    checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 1);
  }
}

// The lattice's W is not exactly symmetric, so -2 W S differs from the true
// gradient -(W + W^T) S; we measured 2-7 % (relative norm) on such inputs.
TYPED_TEST(DenseCRFLossLayerTest, TestGradientNearTrueGradient) {
  typedef typename TypeParam::Dtype Dtype;
  const LayerParameter param = this->Param(3, 30);
  this->Run(param, this->bottom_);
  std::vector<Dtype> analytic(this->prob_->cpu_diff(),
                              this->prob_->cpu_diff() + this->prob_->count());
  double err = 0, norm = 0;
  DenseCRFLossLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_vec_);
  const Dtype h = 1e-2;
  for (int i = 0; i < this->prob_->count(); ++i) {
    Dtype* p = this->prob_->mutable_cpu_data() + i;
    const Dtype saved = *p;
    *p = saved + h;
    const double plus = layer.Forward(this->bottom_, this->top_vec_);
    *p = saved - h;
    const double minus = layer.Forward(this->bottom_, this->top_vec_);
    *p = saved;
    const double numeric = (plus - minus) / (2 * h);
    err += (numeric - analytic[i]) * (numeric - analytic[i]);
    norm += numeric * numeric;
  }
  EXPECT_GT(norm, 1);
  EXPECT_LT(std::sqrt(err / norm), 0.1);
}

TYPED_TEST(DenseCRFLossLayerTest, TestRoiRule) {
  typedef typename TypeParam::Dtype Dtype;
  this->Run(this->Param(5, 20), this->bottom_);
  // Row 0 of image 0 is zero-padding: no gradient there, elsewhere some.
  for (int k = 0; k < 3; ++k) {
    for (int x = 0; x < 6; ++x) {
      EXPECT_EQ(this->prob_->diff_at(0, k, 0, x), 0);
      EXPECT_LT(this->prob_->diff_at(0, k, 1, x), 0);
      EXPECT_LT(this->prob_->diff_at(1, k, 0, x), 0);
    }
  }
  // The same ROI given as a bottom gives the same loss and gradient.
  const Dtype rule_loss = this->top_->cpu_data()[0];
  std::vector<Dtype> rule_grad(this->prob_->cpu_diff(),
                               this->prob_->cpu_diff() + this->prob_->count());
  Blob<Dtype> roi(2, 1, 5, 6);
  const std::vector<float> mask = this->RuleRoi(*this->image_);
  for (int i = 0; i < roi.count(); ++i) roi.mutable_cpu_data()[i] = mask[i] * 3;
  vector<Blob<Dtype>*> bottom = this->bottom_;
  bottom.push_back(&roi);
  this->Run(this->Param(5, 20), bottom);
  EXPECT_EQ(this->top_->cpu_data()[0], rule_loss);
  for (int i = 0; i < this->prob_->count(); ++i) {
    EXPECT_EQ(this->prob_->cpu_diff()[i], rule_grad[i]);
  }
}

TYPED_TEST(DenseCRFLossLayerTest, TestRoiBottom) {
  typedef typename TypeParam::Dtype Dtype;
  // An explicit ROI (left half) overrides the rule: the padded row counts.
  Blob<Dtype> roi(2, 1, 5, 6);
  std::vector<float> mask(roi.count());
  for (int i = 0; i < roi.count(); ++i) {
    mask[i] = (i % 6) < 3;
    roi.mutable_cpu_data()[i] = mask[i];
  }
  vector<Blob<Dtype>*> bottom = this->bottom_;
  bottom.push_back(&roi);
  const Dtype loss = this->Run(this->Param(4, 25), bottom);
  std::vector<double> grad;
  const double expected = this->Expected(*this->image_, *this->prob_, mask, 4,
                                         25, &grad);
  EXPECT_NEAR(loss, expected, 1e-5 * std::fabs(expected));
  for (int i = 0; i < this->prob_->count(); ++i) {
    EXPECT_NEAR(this->prob_->cpu_diff()[i], grad[i],
                1e-5 * (1 + std::fabs(grad[i])));
    if (i % 6 >= 3) {
      EXPECT_EQ(this->prob_->cpu_diff()[i], 0);
    }
  }
}

TYPED_TEST(DenseCRFLossLayerTest, TestReshape) {
  typedef typename TypeParam::Dtype Dtype;
  const LayerParameter param = this->Param(4, 25);
  DenseCRFLossLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_vec_);
  const Dtype first = layer.Forward(this->bottom_, this->top_vec_);
  // A batch of another size, then the first again: each as a fresh layer.
  vector<Blob<Dtype>*> other = this->MakeBottom(3, 3, 5, 7, 4);
  layer.Reshape(other, this->top_vec_);
  const Dtype second = layer.Forward(other, this->top_vec_);
  EXPECT_EQ(second, this->Run(param, other));
  layer.Reshape(this->bottom_, this->top_vec_);
  EXPECT_EQ(layer.Forward(this->bottom_, this->top_vec_), first);
}

TYPED_TEST(DenseCRFLossLayerTest, TestImageChannels) {
  typedef typename TypeParam::Dtype Dtype;
  for (int channels : {1, 3, 4}) {
    vector<Blob<Dtype>*> bottom =
        this->MakeBottom(2, channels, 3, 6, 5);
    Blob<Dtype>& image = *bottom[0];
    Blob<Dtype>& prob = *bottom[1];
    const Dtype loss = this->Run(this->Param(3, 20), bottom);
    std::vector<double> grad;
    const double expected = this->Expected(image, prob, this->RuleRoi(image),
                                           3, 20, &grad);
    EXPECT_NEAR(loss, expected, 1e-5 * std::fabs(expected)) << channels;
    for (int i = 0; i < prob.count(); ++i) {
      EXPECT_NEAR(prob.cpu_diff()[i], grad[i], 1e-5 * (1 + std::fabs(grad[i])));
    }
  }
}

// scale_factor 0.5 on even sizes: bilinear (half-pixel) resize averages 2x2
// blocks and nearest sampling takes the top-left pixel of each block.
TYPED_TEST(DenseCRFLossLayerTest, TestScaleFactorHalf) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> full = this->MakeBottom(2, 3, 3, 8, 10);
  Blob<Dtype>& image = *full[0];
  Blob<Dtype>& prob = *full[1];
  Blob<Dtype> small_image(2, 3, 4, 5), small_prob(2, 3, 4, 5);
  for (int n = 0; n < 2; ++n) {
    for (int c = 0; c < 3; ++c) {
      for (int y = 0; y < 4; ++y) {
        for (int x = 0; x < 5; ++x) {
          small_image.mutable_cpu_data()[small_image.offset(n, c, y, x)] =
              image.data_at(n, c, 2 * y, 2 * x);
          small_prob.mutable_cpu_data()[small_prob.offset(n, c, y, x)] =
              (prob.data_at(n, c, 2 * y, 2 * x) +
               prob.data_at(n, c, 2 * y + 1, 2 * x) +
               prob.data_at(n, c, 2 * y, 2 * x + 1) +
               prob.data_at(n, c, 2 * y + 1, 2 * x + 1)) / 4;
        }
      }
    }
  }
  vector<Blob<Dtype>*> small;
  small.push_back(&small_image);
  small.push_back(&small_prob);
  const Dtype scaled = this->Run(this->Param(6, 20, 0.5), full);
  const Dtype direct = this->Run(this->Param(3, 20, 1), small);
  EXPECT_NEAR(scaled, direct, 1e-5 * std::fabs(direct));
  // Adjoint of 2x2 averaging: each pixel gets a quarter of its block's grad.
  for (int i = 0; i < prob.count(); ++i) {
    const int x = i % 10, y = (i / 10) % 8, c = (i / 80) % 3, n = i / 240;
    const Dtype g = small_prob.diff_at(n, c, y / 2, x / 2) / 4;
    EXPECT_NEAR(prob.cpu_diff()[i], g, 1e-5 * (1 + std::fabs(g)));
  }
}

#ifdef _OPENMP
TYPED_TEST(DenseCRFLossLayerTest, TestThreadCountInvariance) {
  typedef typename TypeParam::Dtype Dtype;
  const int saved = omp_get_max_threads();
  // One image (threads inside it) and three (threads across them), at full
  // and reduced resolution.
  for (int num : {1, 3}) {
    for (float scale : {1.0f, 0.6f}) {
      vector<Blob<Dtype>*> bottom = this->MakeBottom(num, 3, 4, 9, 11);
      Blob<Dtype>& prob = *bottom[1];
      std::vector<Dtype> losses, diffs[2];
      for (int t = 0; t < 2; ++t) {
        omp_set_num_threads(t + 1);
        losses.push_back(this->Run(this->Param(4, 30, scale), bottom));
        diffs[t].assign(prob.cpu_diff(), prob.cpu_diff() + prob.count());
      }
      EXPECT_EQ(losses[0], losses[1]) << num << " " << scale;
      EXPECT_TRUE(diffs[0] == diffs[1]) << num << " " << scale;
    }
  }
  omp_set_num_threads(saved);
}
#endif

// The published layer's values (../shared/reference/densecrf_loss, exported
// to .npy by `make test`) must be reproduced to 1e-3 relative.
TYPED_TEST(DenseCRFLossLayerTest, TestPublishedReference) {
  typedef typename TypeParam::Dtype Dtype;
  std::vector<ReferenceCase> cases;
  if (!ReferenceCasesToCheck(&cases)) return;
  for (size_t t = 0; t < cases.size(); ++t) {
    const ReferenceCase& c = cases[t];
    Blob<Dtype> image_blob(c.image_shape), prob_blob(c.prob_shape);
    std::copy(c.image.begin(), c.image.end(), image_blob.mutable_cpu_data());
    std::copy(c.prob.begin(), c.prob.end(), prob_blob.mutable_cpu_data());
    vector<Blob<Dtype>*> bottom;
    bottom.push_back(&image_blob);
    bottom.push_back(&prob_blob);
    const Dtype got = this->Run(this->Param(c.sigma_xy, c.sigma_rgb), bottom);
    EXPECT_NEAR(got / c.loss, 1, 1e-3) << c.name;
    EXPECT_LT(RelativeError(prob_blob.cpu_diff(), c.grad), 1e-3) << c.name;
  }
}

// Bad input stops with a message that says what is wrong.
class DenseCRFLossLayerDeathTest : public ::testing::Test {
 protected:
  DenseCRFLossLayerDeathTest() : image_(1, 3, 4, 5), prob_(1, 2, 4, 5) {
    ::testing::FLAGS_gtest_death_test_style = "threadsafe";
    FillerParameter fp;
    fp.set_min(1);
    fp.set_max(200);
    UniformFiller<float>(fp).Fill(&image_);
    fp.set_min(0);
    fp.set_max(1);
    UniformFiller<float>(fp).Fill(&prob_);
    bottom_.push_back(&image_);
    bottom_.push_back(&prob_);
    top_.push_back(&top_blob_);
    param_.set_name("crf");
    param_.add_bottom("data");
    param_.add_bottom("prob");
  }
  void SetUpAndForward() {
    DenseCRFLossLayer<float> layer(param_);
    layer.SetUp(bottom_, top_);
    layer.Forward(bottom_, top_);
  }
  Blob<float> image_, prob_, top_blob_;
  vector<Blob<float>*> bottom_, top_;
  LayerParameter param_;
};

TEST_F(DenseCRFLossLayerDeathTest, TestNonPositiveSigma) {
  param_.mutable_densecrf_loss_param()->set_bi_xy_std(0);
  EXPECT_DEATH(SetUpAndForward(),
      "'crf': bi_xy_std is 0; set densecrf_loss_param");
  param_.mutable_densecrf_loss_param()->set_bi_xy_std(10);
  param_.mutable_densecrf_loss_param()->set_bi_rgb_std(-3);
  EXPECT_DEATH(SetUpAndForward(),
      "bi_rgb_std is -3; set densecrf_loss_param");
}

TEST_F(DenseCRFLossLayerDeathTest, TestScaleFactorRange) {
  param_.mutable_densecrf_loss_param()->set_scale_factor(0);
  EXPECT_DEATH(SetUpAndForward(),
      "scale_factor is 0; it must lie in \\(0, 1\\]");
  param_.mutable_densecrf_loss_param()->set_scale_factor(1.5);
  EXPECT_DEATH(SetUpAndForward(),
      "scale_factor is 1.5");
  param_.mutable_densecrf_loss_param()->set_scale_factor(0.1);
  EXPECT_DEATH(SetUpAndForward(),
      "shrinks the 4 x 5 input to nothing");
}

TEST_F(DenseCRFLossLayerDeathTest, TestShapeMismatch) {
  prob_.Reshape(1, 2, 4, 6);
  EXPECT_DEATH(SetUpAndForward(),
      "bottom\\[0\\] \\(the image, 1 3 4 5 \\(60\\)\\) and "
      "bottom\\[1\\] \\(the probabilities, 1 2 4 6 \\(48\\)\\) must agree");
  prob_.Reshape(2, 2, 4, 5);
  EXPECT_DEATH(SetUpAndForward(),
      "must agree in N, H and W");
  prob_.Reshape(1, 0, 4, 5);
  EXPECT_DEATH(SetUpAndForward(),
      "bottom\\[1\\] \\(the probabilities\\) has no classes");
  prob_.Reshape(1, 2, 4, 5);
  image_.Reshape(1, 0, 4, 5);
  EXPECT_DEATH(SetUpAndForward(),
      "bottom\\[0\\] \\(the image\\) has no channels");
  image_.Reshape(std::vector<int>(3, 4));
  EXPECT_DEATH(SetUpAndForward(),
      "bottom\\[0\\] \\(the image\\) must be N x C x H x W");
}

TEST_F(DenseCRFLossLayerDeathTest, TestFeaturesOutOfRange) {
  // 4 x 5 image: x / bi_xy_std reaches 4 / 1e-5 = 400000.
  param_.mutable_densecrf_loss_param()->set_bi_xy_std(1e-5);
  EXPECT_DEATH(SetUpAndForward(),
      "'crf': bi_xy_std 1e-05 is too small for a 4 x 5 image: positions /"
      " bi_xy_std reach 400000, beyond the lattice's range of 100000");
  param_.mutable_densecrf_loss_param()->set_bi_xy_std(10);
  param_.mutable_densecrf_loss_param()->set_bi_rgb_std(15);
  image_.mutable_cpu_data()[image_.offset(0, 1, 2, 3)] = -3e6;
  EXPECT_DEATH(SetUpAndForward(),
      "'crf': image values reach 3e\\+06, which over bi_rgb_std 15 is beyond"
      " the lattice's range of 100000; raise bi_rgb_std");
}

TEST_F(DenseCRFLossLayerDeathTest, TestRoiShape) {
  Blob<float> roi(1, 2, 4, 5);
  bottom_.push_back(&roi);
  EXPECT_DEATH(SetUpAndForward(),
      "bottom\\[2\\] \\(the ROI\\) must be N x 1 x H x W"
      " = 1 x 1 x 4 x 5, got 1 2 4 5");
}

TEST_F(DenseCRFLossLayerDeathTest, TestNonFinite) {
  prob_.mutable_cpu_data()[prob_.offset(0, 1, 2, 3)] = NAN;
  EXPECT_DEATH(SetUpAndForward(),
      "bottom\\[1\\] \\(the probabilities\\) 1 2 4 5 "
      "\\(40\\) holds nan at \\(n, c, y, x\\) = \\(0, 1, 2, 3\\)");
  prob_.mutable_cpu_data()[prob_.offset(0, 1, 2, 3)] = 0.5;
  image_.mutable_cpu_data()[image_.offset(0, 2, 1, 4)] = INFINITY;
  EXPECT_DEATH(SetUpAndForward(),
      "bottom\\[0\\] \\(the image\\) .* holds inf at "
      "\\(n, c, y, x\\) = \\(0, 2, 1, 4\\)");
  image_.mutable_cpu_data()[image_.offset(0, 2, 1, 4)] = 7;
  Blob<float> roi(1, 1, 4, 5);
  roi.mutable_cpu_data()[roi.offset(0, 0, 3, 1)] = NAN;
  bottom_.push_back(&roi);
  EXPECT_DEATH(SetUpAndForward(),
      "bottom\\[2\\] \\(the ROI\\) .* holds nan at "
      "\\(n, c, y, x\\) = \\(0, 0, 3, 1\\)");
}

// Images are checked one by one, on the thread that filters them: a bad value
// in a later image is still named by its place in the whole blob.
TEST_F(DenseCRFLossLayerDeathTest, TestNonFiniteInLaterImage) {
  image_.Reshape(3, 3, 4, 5);
  prob_.Reshape(3, 2, 4, 5);
  FillerParameter fp;
  fp.set_min(1);
  fp.set_max(200);
  UniformFiller<float>(fp).Fill(&image_);
  caffe_set(prob_.count(), 0.5f, prob_.mutable_cpu_data());
  image_.mutable_cpu_data()[image_.offset(2, 1, 3, 2)] = NAN;
  EXPECT_DEATH(SetUpAndForward(),
      "bottom\\[0\\] \\(the image\\) 3 3 4 5 \\(180\\) holds nan at "
      "\\(n, c, y, x\\) = \\(2, 1, 3, 2\\)");
  image_.mutable_cpu_data()[image_.offset(2, 1, 3, 2)] = 7;
  image_.mutable_cpu_data()[image_.offset(1, 0, 0, 4)] = 2e7;
  param_.mutable_densecrf_loss_param()->set_scale_factor(0.5);
  EXPECT_DEATH(SetUpAndForward(),
      "image values reach 2e\\+07, which over bi_rgb_std 40");
  image_.mutable_cpu_data()[image_.offset(1, 0, 0, 4)] = 7;
  Blob<float> roi(3, 1, 4, 5);
  caffe_set(roi.count(), 1.0f, roi.mutable_cpu_data());
  roi.mutable_cpu_data()[roi.offset(1, 0, 2, 0)] = -INFINITY;
  bottom_.push_back(&roi);
  EXPECT_DEATH(SetUpAndForward(),
      "bottom\\[2\\] \\(the ROI\\) .* holds -inf at "
      "\\(n, c, y, x\\) = \\(1, 0, 2, 0\\)");
}

TEST_F(DenseCRFLossLayerDeathTest, TestBackwardToImage) {
  DenseCRFLossLayer<float> layer(param_);
  layer.SetUp(bottom_, top_);
  layer.Forward(bottom_, top_);
  vector<bool> down(2, true);
  EXPECT_DEATH(layer.Backward(top_, down, bottom_),
               "has no gradient for bottom\\[0\\] \\(the image\\); set its"
               " propagate_down: false");
}

}  // namespace caffe
