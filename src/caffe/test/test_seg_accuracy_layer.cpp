#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layers/seg_accuracy_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

template <typename TypeParam>
class SegAccuracyLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  // One 2 x 4 image, 3 classes; predictions and labels given per pixel.
  SegAccuracyLayerTest() : score_(1, 3, 2, 4), label_(1, 1, 2, 4) {
    bottom_.push_back(&score_);
    bottom_.push_back(&label_);
    top_.push_back(&out_);
  }

  void Set(const int* predicted, const int* truth) {
    Dtype* s = score_.mutable_cpu_data();
    for (int i = 0; i < 8; ++i) {
      for (int k = 0; k < 3; ++k) s[k * 8 + i] = (k == predicted[i]) ? 2 : -1;
      label_.mutable_cpu_data()[i] = truth[i];
    }
  }

  Blob<Dtype> score_, label_, out_;
  vector<Blob<Dtype>*> bottom_, top_;
};

TYPED_TEST_CASE(SegAccuracyLayerTest, TestDtypesAndDevices);

TYPED_TEST(SegAccuracyLayerTest, TestHandComputedConfusion) {
  typedef typename TypeParam::Dtype Dtype;
  //             pixel: 0  1  2  3  4    5  6  7
  const int predicted[] = {0, 0, 1, 1, 2,   2, 0, 1};
  const int truth[]     = {0, 1, 1, 1, 2, 255, 0, 2};
  this->Set(predicted, truth);
  LayerParameter param;
  param.mutable_seg_accuracy_param()->add_ignore_label(255);
  SegAccuracyLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  // Confusion (row truth, column predicted) over the 7 labelled pixels:
  //   class 0: [2 0 0]   class 1: [1 2 0]   class 2: [0 1 1]
  const double expected[] = {2, 0, 0, 1, 2, 0, 0, 1, 1};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(layer.confusion()[i], expected[i]);
  const Dtype* out = this->out_.cpu_data();
  EXPECT_NEAR(out[0], 5.0 / 7, 1e-6);                        // pixel acc
  EXPECT_NEAR(out[1], (1.0 + 2.0 / 3 + 0.5) / 3, 1e-6);      // class acc
  // IoU: 2/(2+3-2), 2/(3+3-2), 1/(2+1-1)
  EXPECT_NEAR(out[2], (2.0 / 3 + 0.5 + 0.5) / 3, 1e-6);
}

TYPED_TEST(SegAccuracyLayerTest, TestResetAndAccumulate) {
  typedef typename TypeParam::Dtype Dtype;
  const int pred_a[] = {0, 0, 0, 0, 1, 1, 1, 1};
  const int true_a[] = {0, 0, 0, 0, 1, 1, 1, 1};  // all right
  const int pred_b[] = {1, 1, 1, 1, 0, 0, 0, 0};
  const int true_b[] = {0, 0, 0, 0, 1, 1, 1, 1};  // all wrong
  for (int reset = 0; reset < 2; ++reset) {
    LayerParameter param;
    param.mutable_seg_accuracy_param()->set_reset(reset);
    SegAccuracyLayer<Dtype> layer(param);
    this->Set(pred_a, true_a);
    layer.SetUp(this->bottom_, this->top_);
    layer.Forward(this->bottom_, this->top_);
    EXPECT_NEAR(this->out_.cpu_data()[0], 1, 1e-6);
    EXPECT_NEAR(this->out_.cpu_data()[2], 1, 1e-6);
    this->Set(pred_b, true_b);
    layer.Forward(this->bottom_, this->top_);
    if (reset) {
      EXPECT_NEAR(this->out_.cpu_data()[0], 0, 1e-6);
      EXPECT_NEAR(this->out_.cpu_data()[2], 0, 1e-6);
    } else {
      // Accumulated: [[4 4] [4 4]]: pixel acc 1/2, IoU 4/12 for both.
      EXPECT_NEAR(this->out_.cpu_data()[0], 0.5, 1e-6);
      EXPECT_NEAR(this->out_.cpu_data()[1], 0.5, 1e-6);
      EXPECT_NEAR(this->out_.cpu_data()[2], 1.0 / 3, 1e-6);
    }
  }
}

TYPED_TEST(SegAccuracyLayerTest, TestIgnoresSeveralLabels) {
  typedef typename TypeParam::Dtype Dtype;
  const int predicted[] = {0, 1, 2, 0, 1, 2, 0, 1};
  const int truth[]     = {0, 1, 2, 7, 9, 9, 1, 1};
  this->Set(predicted, truth);
  LayerParameter param;
  param.mutable_seg_accuracy_param()->add_ignore_label(7);
  param.mutable_seg_accuracy_param()->add_ignore_label(9);
  SegAccuracyLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  EXPECT_NEAR(this->out_.cpu_data()[0], 4.0 / 5, 1e-6);
}

class SegAccuracyLayerDeathTest : public ::testing::Test {
 protected:
  SegAccuracyLayerDeathTest() : score_(1, 2, 2, 2), label_(1, 1, 2, 2) {
    ::testing::FLAGS_gtest_death_test_style = "threadsafe";
    bottom_.push_back(&score_);
    bottom_.push_back(&label_);
    top_.push_back(&out_);
  }
  void Run() {
    LayerParameter param;
    param.mutable_seg_accuracy_param()->add_ignore_label(255);
    SegAccuracyLayer<float> layer(param);
    layer.SetUp(bottom_, top_);
    layer.Forward(bottom_, top_);
  }
  Blob<float> score_, label_, out_;
  vector<Blob<float>*> bottom_, top_;
};

TEST_F(SegAccuracyLayerDeathTest, TestLabelOutOfRange) {
  label_.mutable_cpu_data()[2] = 5;
  EXPECT_DEATH(Run(), "label 5 at image 0, pixel 2 is outside \\[0, 2\\)");
}

TEST_F(SegAccuracyLayerDeathTest, TestNonFiniteLabel) {
  label_.mutable_cpu_data()[1] = NAN;
  EXPECT_DEATH(Run(), "label nan at image 0, pixel 1 is not a number");
}

TEST_F(SegAccuracyLayerDeathTest, TestFractionalLabel) {
  // Rounded, 0.5 would have passed as class 1.
  label_.mutable_cpu_data()[3] = 0.5;
  EXPECT_DEATH(Run(), "label 0.5 at image 0, pixel 3 is not a whole class id");
}

TEST_F(SegAccuracyLayerDeathTest, TestNanScore) {
  // Class 1's score at pixel 3: a NaN would otherwise count as class 0.
  score_.mutable_cpu_data()[4 + 3] = NAN;
  EXPECT_DEATH(Run(), "the scores of image 0, pixel 3 hold nan");
}

TEST_F(SegAccuracyLayerDeathTest, TestNanScoreAtIgnoredPixelIsSkipped) {
  label_.mutable_cpu_data()[3] = 255;
  score_.mutable_cpu_data()[3] = NAN;
  Run();
  EXPECT_NEAR(out_.cpu_data()[0], 1, 1e-6);
}

TEST_F(SegAccuracyLayerDeathTest, TestNoGradient) {
  LayerParameter param;
  SegAccuracyLayer<float> layer(param);
  layer.SetUp(bottom_, top_);
  EXPECT_DEATH(layer.Backward(top_, vector<bool>(2, true), bottom_),
               "has no gradient");
}

TEST_F(SegAccuracyLayerDeathTest, TestShapeMismatch) {
  label_.Reshape(1, 1, 2, 3);
  EXPECT_DEATH(Run(), "do not match scores");
}

}  // namespace caffe
