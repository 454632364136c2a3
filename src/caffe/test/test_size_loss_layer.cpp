#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/size_loss_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

template <typename TypeParam>
class SizeLossLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  // Probabilities of 3 classes over 4 x 5 pixels; class 0 is large (about
  // 20 * 0.6), classes 1 and 2 small (about 20 * 0.2).
  SizeLossLayerTest() : prob_(new Blob<Dtype>(2, 3, 4, 5)),
                        top_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    FillerParameter fp;
    fp.set_min(0);
    fp.set_max(1);
    UniformFiller<Dtype>(fp).Fill(prob_.get());
    Dtype* p = prob_->mutable_cpu_data();
    for (int n = 0; n < 2; ++n) {
      for (int i = 0; i < 20; ++i) {
        const Dtype a = p[(n * 3) * 20 + i] * Dtype(0.2) + Dtype(0.5);
        const Dtype b = (1 - a) * p[(n * 3 + 1) * 20 + i];
        p[(n * 3) * 20 + i] = a;
        p[(n * 3 + 1) * 20 + i] = b;
        p[(n * 3 + 2) * 20 + i] = 1 - a - b;
      }
    }
    bottom_.push_back(prob_.get());
    top_vec_.push_back(top_.get());
  }

  double Size(int n, int k) const {
    double s = 0;
    for (int i = 0; i < 20; ++i) s += prob_->cpu_data()[(n * 3 + k) * 20 + i];
    return s;
  }

  // (1/N) sum over images and classes of the penalty for bounds [a, b].
  double Expected(const std::vector<double>& a, const std::vector<double>& b,
                  double unit = 1) const {
    double loss = 0;
    for (int n = 0; n < 2; ++n) {
      for (int k = 0; k < 3; ++k) {
        const double s = Size(n, k) * unit;
        const double over = std::max(0.0, s - b[k]);
        const double under = std::max(0.0, a[k] - s);
        loss += (over * over + under * under) / 2;
      }
    }
    return loss;
  }

  Dtype Forward(const LayerParameter& param,
                const vector<Blob<Dtype>*>& bottom) {
    SizeLossLayer<Dtype> layer(param);
    layer.SetUp(bottom, top_vec_);
    return layer.Forward(bottom, top_vec_);
  }

  shared_ptr<Blob<Dtype> > prob_;
  shared_ptr<Blob<Dtype> > top_;
  vector<Blob<Dtype>*> bottom_;
  vector<Blob<Dtype>*> top_vec_;
};

TYPED_TEST_CASE(SizeLossLayerTest, TestDtypesAndDevices);

TYPED_TEST(SizeLossLayerTest, TestForwardBounds) {
  const double inf = INFINITY;
  LayerParameter param;
  EXPECT_EQ(this->Forward(param, this->bottom_), 0);  // no bounds: no loss
  // One upper bound for every class: only class 0 (about 12) exceeds 8.
  param.mutable_size_loss_param()->add_upper_bound(8);
  EXPECT_NEAR(this->Forward(param, this->bottom_),
              this->Expected({0, 0, 0}, {8, 8, 8}), 1e-4);
  EXPECT_GT(this->top_->cpu_data()[0], 1);
  // Per-class bounds: class 1 and 2 must reach 6, class 0 stay in [0, 15].
  param.mutable_size_loss_param()->clear_upper_bound();
  for (float a : {0.0f, 6.0f, 6.0f}) {
    param.mutable_size_loss_param()->add_lower_bound(a);
  }
  for (float b : {15.0f, 20.0f, 20.0f}) {
    param.mutable_size_loss_param()->add_upper_bound(b);
  }
  EXPECT_NEAR(this->Forward(param, this->bottom_),
              this->Expected({0, 6, 6}, {15, 20, 20}), 1e-4);
  // Relative: fractions of the 20 pixels, and the penalty in those units.
  LayerParameter rel;
  rel.mutable_size_loss_param()->set_relative(true);
  rel.mutable_size_loss_param()->add_lower_bound(0.3);
  EXPECT_NEAR(this->Forward(rel, this->bottom_),
              this->Expected({0.3, 0.3, 0.3}, {inf, inf, inf}, 1.0 / 20),
              1e-6);
}

TYPED_TEST(SizeLossLayerTest, TestBoundsBottom) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> bounds(std::vector<int>{2, 3, 2});
  const double lo[2][3] = {{0, 5, 0}, {14, 0, 0}};
  const double hi[2][3] = {{9, 20, 2}, {20, 3, 20}};
  for (int n = 0; n < 2; ++n) {
    for (int k = 0; k < 3; ++k) {
      bounds.mutable_cpu_data()[(n * 3 + k) * 2] = lo[n][k];
      bounds.mutable_cpu_data()[(n * 3 + k) * 2 + 1] = hi[n][k];
    }
  }
  vector<Blob<Dtype>*> bottom = this->bottom_;
  bottom.push_back(&bounds);
  double expected = 0;
  for (int n = 0; n < 2; ++n) {
    for (int k = 0; k < 3; ++k) {
      const double s = this->Size(n, k);
      const double over = std::max(0.0, s - hi[n][k]);
      const double under = std::max(0.0, lo[n][k] - s);
      expected += (over * over + under * under) / 2;
    }
  }
  EXPECT_GT(expected, 1);
  EXPECT_NEAR(this->Forward(LayerParameter(), bottom), expected, 1e-4);
}

// Bounds chosen so that every size lies more than the checker's step away
// from a kink: some classes above, some below, some inside.
TYPED_TEST(SizeLossLayerTest, TestGradient) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  for (float a : {0.0f, 6.0f, 0.5f}) {
    param.mutable_size_loss_param()->add_lower_bound(a);
  }
  for (float b : {9.0f, 20.0f, 20.0f}) {
    param.mutable_size_loss_param()->add_upper_bound(b);
  }
  SizeLossLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-3, 1e-3, 1701);
  checker.CheckGradientExhaustive(&layer, this->bottom_, this->top_vec_, 0);
  LayerParameter rel;
  rel.mutable_size_loss_param()->set_relative(true);
  rel.mutable_size_loss_param()->add_lower_bound(0.4);
  SizeLossLayer<Dtype> relative(rel);
  checker.CheckGradientExhaustive(&relative, this->bottom_, this->top_vec_, 0);
}

TYPED_TEST(SizeLossLayerTest, TestBadInputDies) {
  typedef typename TypeParam::Dtype Dtype;
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  LayerParameter two;
  two.mutable_size_loss_param()->add_lower_bound(1);
  two.mutable_size_loss_param()->add_lower_bound(2);
  EXPECT_DEATH(this->Forward(two, this->bottom_),
               "2 lower_bound values for 3 classes");
  LayerParameter crossed;
  crossed.mutable_size_loss_param()->add_lower_bound(5);
  crossed.mutable_size_loss_param()->add_upper_bound(4);
  EXPECT_DEATH(this->Forward(crossed, this->bottom_),
               "lower_bound 5 above upper_bound 4");
  LayerParameter negative;
  negative.mutable_size_loss_param()->add_lower_bound(-1);
  EXPECT_DEATH(this->Forward(negative, this->bottom_), "lower_bound -1");
  Blob<Dtype> bounds(std::vector<int>{2, 3, 1});
  vector<Blob<Dtype>*> bottom = this->bottom_;
  bottom.push_back(&bounds);
  EXPECT_DEATH(this->Forward(LayerParameter(), bottom),
               "must be N x K x 2 = 2 x 3 x 2");
  Blob<Dtype> ok(std::vector<int>{2, 3, 2});
  bottom[1] = &ok;
  EXPECT_DEATH(this->Forward(two, bottom), "not both");
  ok.mutable_cpu_data()[0] = 3;  // lower 3 > upper 0
  EXPECT_DEATH(this->Forward(LayerParameter(), bottom),
               "image 0, class 0 the bounds \\[3, 0\\]");
  ok.mutable_cpu_data()[0] = 0;
  // A NaN probability names the image and class.
  const Dtype saved = this->prob_->cpu_data()[25];
  this->prob_->mutable_cpu_data()[25] = NAN;
  EXPECT_DEATH(this->Forward(LayerParameter(), this->bottom_),
               "image 0, class 1 has size nan; "
               "the probabilities must be finite");
  this->prob_->mutable_cpu_data()[25] = saved;
  SizeLossLayer<Dtype> layer((LayerParameter()));
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  vector<bool> down(2, true);
  EXPECT_DEATH(layer.Backward(this->top_vec_, down, bottom),
               "no gradient for bottom\\[1\\]");
}

}  // namespace caffe
