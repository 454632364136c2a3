#include <algorithm>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/interp_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

template <typename TypeParam>
class InterpLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  InterpLayerTest() : bottom_(new Blob<Dtype>(2, 3, 9, 17)),
                      size_(new Blob<Dtype>(1, 1, 4, 6)),
                      top_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    FillerParameter fp;
    GaussianFiller<Dtype>(fp).Fill(bottom_.get());
    bottom_vec_.push_back(bottom_.get());
    top_vec_.push_back(top_.get());
  }

  // Output shape for the given parameters and bottoms.
  vector<int> Shape(const LayerParameter& param,
                    const vector<Blob<Dtype>*>& bottom) {
    InterpLayer<Dtype> layer(param);
    layer.SetUp(bottom, top_vec_);
    return top_->shape();
  }

  // Bilinear sample, corners aligned, of bottom plane c at output (y, x).
  Dtype Expected(int c, int y, int x, int out_h, int out_w, int pad_beg,
                 int h_eff, int w_eff) {
    const double sy =
        out_h > 1 ? static_cast<double>(h_eff - 1) / (out_h - 1) * y : 0;
    const double sx =
        out_w > 1 ? static_cast<double>(w_eff - 1) / (out_w - 1) * x : 0;
    const int y0 = static_cast<int>(sy), x0 = static_cast<int>(sx);
    const int y1 = std::min(y0 + 1, h_eff - 1);
    const int x1 = std::min(x0 + 1, w_eff - 1);
    const double fy = sy - y0, fx = sx - x0;
    const Dtype* in = bottom_->cpu_data() +
        c * bottom_->height() * bottom_->width();
    const int W = bottom_->width();
    const int o = -pad_beg;
    const double v00 = in[(y0 + o) * W + x0 + o];
    const double v01 = in[(y0 + o) * W + x1 + o];
    const double v10 = in[(y1 + o) * W + x0 + o];
    const double v11 = in[(y1 + o) * W + x1 + o];
    return (1 - fy) * ((1 - fx) * v00 + fx * v01) +
           fy * ((1 - fx) * v10 + fx * v11);
  }

  virtual ~InterpLayerTest() {}
  shared_ptr<Blob<Dtype> > bottom_, size_, top_;
  vector<Blob<Dtype>*> bottom_vec_, top_vec_;
};

TYPED_TEST_CASE(InterpLayerTest, TestDtypesAndDevices);

TYPED_TEST(InterpLayerTest, TestSizeRules) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  InterpParameter* p = param.mutable_interp_param();
  // 9 x 17: shrink 8 -> 2 x 3; zoom 8 -> 65 x 129; both -> 9 x 17.
  p->set_shrink_factor(8);
  EXPECT_EQ(this->Shape(param, this->bottom_vec_),
            (vector<int>{2, 3, 2, 3}));
  p->clear_shrink_factor();
  p->set_zoom_factor(8);
  EXPECT_EQ(this->Shape(param, this->bottom_vec_),
            (vector<int>{2, 3, 65, 129}));
  p->set_shrink_factor(4);
  p->set_zoom_factor(2);  // (9-1)/4+1 = 3 -> 5; (17-1)/4+1 = 5 -> 9
  EXPECT_EQ(this->Shape(param, this->bottom_vec_),
            (vector<int>{2, 3, 5, 9}));
  // Negative pads crop first: 9 - 2 = 7 -> (7-1)/2+1 = 4; 17-2 -> 8.
  p->set_pad_beg(-1);
  p->set_pad_end(-1);
  p->set_shrink_factor(2);
  p->set_zoom_factor(1);
  EXPECT_EQ(this->Shape(param, this->bottom_vec_),
            (vector<int>{2, 3, 4, 8}));
  param.clear_interp_param();
  param.mutable_interp_param()->set_height(5);
  param.mutable_interp_param()->set_width(7);
  EXPECT_EQ(this->Shape(param, this->bottom_vec_),
            (vector<int>{2, 3, 5, 7}));
  param.clear_interp_param();
  vector<Blob<Dtype>*> two = this->bottom_vec_;
  two.push_back(this->size_.get());
  EXPECT_EQ(this->Shape(param, two), (vector<int>{2, 3, 4, 6}));
}

TYPED_TEST(InterpLayerTest, TestForwardValues) {
  typedef typename TypeParam::Dtype Dtype;
  const Dtype tol = sizeof(Dtype) == 4 ? 1e-5 : 1e-12;
  struct Case { int shrink, zoom, pad_beg, pad_end; };
  const Case cases[] = {{1, 3, 0, 0}, {2, 1, 0, 0}, {4, 3, 0, 0},
                        {2, 1, -1, -2}, {1, 2, -2, 0}};
  for (const Case& c : cases) {
    LayerParameter param;
    InterpParameter* p = param.mutable_interp_param();
    p->set_shrink_factor(c.shrink);
    p->set_zoom_factor(c.zoom);
    p->set_pad_beg(c.pad_beg);
    p->set_pad_end(c.pad_end);
    InterpLayer<Dtype> layer(param);
    layer.SetUp(this->bottom_vec_, this->top_vec_);
    layer.Forward(this->bottom_vec_, this->top_vec_);
    const int h_eff = 9 + c.pad_beg + c.pad_end;
    const int w_eff = 17 + c.pad_beg + c.pad_end;
    const int H = this->top_->height(), W = this->top_->width();
    for (int n = 0; n < 6; ++n) {
      for (int y = 0; y < H; ++y) {
        for (int x = 0; x < W; ++x) {
          EXPECT_NEAR(this->top_->cpu_data()[(n * H + y) * W + x],
                      this->Expected(n, y, x, H, W, c.pad_beg, h_eff, w_eff),
                      tol) << "shrink " << c.shrink << " zoom " << c.zoom
                           << " pads " << c.pad_beg << "," << c.pad_end;
        }
      }
    }
  }
}

TYPED_TEST(InterpLayerTest, TestShrinkKeepsLabels) {
  typedef typename TypeParam::Dtype Dtype;
  // A 17 x 25 label map shrunk by 8 reads exactly rows/columns 0, 8, 16...
  Blob<Dtype> labels(1, 1, 17, 25);
  for (int i = 0; i < labels.count(); ++i) {
    labels.mutable_cpu_data()[i] = (i * 7) % 21;
  }
  vector<Blob<Dtype>*> bottom(1, &labels);
  LayerParameter param;
  param.mutable_interp_param()->set_shrink_factor(8);
  InterpLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  ASSERT_EQ(this->top_->height(), 3);
  ASSERT_EQ(this->top_->width(), 4);
  for (int y = 0; y < 3; ++y) {
    for (int x = 0; x < 4; ++x) {
      EXPECT_EQ(this->top_->data_at(0, 0, y, x),
                labels.data_at(0, 0, 8 * y, 8 * x));
    }
  }
}

TYPED_TEST(InterpLayerTest, TestZoomInterpolatesLinearRamp) {
  typedef typename TypeParam::Dtype Dtype;
  // Bilinear interpolation reproduces an affine function exactly.
  Blob<Dtype> ramp(1, 1, 4, 5);
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 5; ++x) {
      ramp.mutable_cpu_data()[y * 5 + x] = 3 * y - 2 * x + 1;
    }
  }
  vector<Blob<Dtype>*> bottom(1, &ramp);
  LayerParameter param;
  param.mutable_interp_param()->set_zoom_factor(4);
  InterpLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  ASSERT_EQ(this->top_->height(), 13);
  ASSERT_EQ(this->top_->width(), 17);
  for (int y = 0; y < 13; ++y) {
    for (int x = 0; x < 17; ++x) {
      EXPECT_NEAR(this->top_->data_at(0, 0, y, x),
                  3 * (y / 4.0) - 2 * (x / 4.0) + 1, 1e-5);
    }
  }
}

TYPED_TEST(InterpLayerTest, TestGradientZoom) {
  typedef typename TypeParam::Dtype Dtype;
  // Small input: the exhaustive check costs outputs x inputs forwards.
  Blob<Dtype> small(1, 2, 4, 5);
  FillerParameter fp;
  GaussianFiller<Dtype>(fp).Fill(&small);
  vector<Blob<Dtype>*> bottom(1, &small);
  LayerParameter param;
  param.mutable_interp_param()->set_zoom_factor(3);
  InterpLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 1e-2);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_);
}

TYPED_TEST(InterpLayerTest, TestGradientShrinkCrop) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  param.mutable_interp_param()->set_shrink_factor(3);
  param.mutable_interp_param()->set_zoom_factor(2);
  param.mutable_interp_param()->set_pad_beg(-1);
  param.mutable_interp_param()->set_pad_end(-2);
  InterpLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 1e-2);
  checker.CheckGradientExhaustive(&layer, this->bottom_vec_, this->top_vec_);
}

TYPED_TEST(InterpLayerTest, TestGradientSecondBottom) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  vector<Blob<Dtype>*> two = this->bottom_vec_;
  two.push_back(this->size_.get());
  InterpLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 1e-2);
  checker.CheckGradientExhaustive(&layer, two, this->top_vec_, 0);
}

class InterpLayerDeathTest : public ::testing::Test {
 protected:
  InterpLayerDeathTest() : bottom_(1, 1, 5, 5) {
    ::testing::FLAGS_gtest_death_test_style = "threadsafe";
    bottom_vec_.push_back(&bottom_);
    top_vec_.push_back(&top_);
  }
  void SetUp(const LayerParameter& param) {
    InterpLayer<float> layer(param);
    layer.SetUp(bottom_vec_, top_vec_);
  }
  Blob<float> bottom_, top_;
  vector<Blob<float>*> bottom_vec_, top_vec_;
};

TEST_F(InterpLayerDeathTest, TestBadParameters) {
  LayerParameter param;
  EXPECT_DEATH(SetUp(param), "give exactly one of");
  param.mutable_interp_param()->set_zoom_factor(2);
  param.mutable_interp_param()->set_height(3);
  EXPECT_DEATH(SetUp(param), "give exactly one of");
  param.clear_interp_param();
  param.mutable_interp_param()->set_pad_beg(1);
  param.mutable_interp_param()->set_zoom_factor(2);
  EXPECT_DEATH(SetUp(param), "must be <= 0");
  param.clear_interp_param();
  param.mutable_interp_param()->set_pad_beg(-3);
  param.mutable_interp_param()->set_pad_end(-2);
  param.mutable_interp_param()->set_zoom_factor(2);
  EXPECT_DEATH(SetUp(param), "crop away the whole");
  param.clear_interp_param();
  param.mutable_interp_param()->set_height(3);
  EXPECT_DEATH(SetUp(param), "height and width must both be given");
}

}  // namespace caffe
