#include <opencv2/core/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <png.h>

#include <cmath>
#include <cstdio>
#include <fstream>  // NOLINT(readability/streams)
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layers/image_seg_data_layer.hpp"
#include "caffe/util/io.hpp"
#include "caffe/util/label_image.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

namespace {

// Pixel (y, x, channel c) of generated image i: distinct per image and place.
int PixelValue(int i, int y, int x, int c) {
  return (40 * i + 7 * y + 3 * x + 50 * c) % 256;
}

int LabelValue(int i, int y, int x) { return (i + y + 2 * x) % 5; }

// Writes an 8-bit palette PNG whose palette repeats colours, so that only
// the indices (not the colours) identify the classes.
void WritePalettePng(const std::string& path, const cv::Mat& indices) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_TRUE(f != NULL);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL,
                                            NULL, NULL);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, f);
  png_set_IHDR(png, info, indices.cols, indices.rows, 8,
               PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  std::vector<png_color> palette(256);
  for (int i = 0; i < 256; ++i) {
    palette[i].red = palette[i].green = palette[i].blue = (i % 2) * 200;
  }
  png_set_PLTE(png, info, palette.data(), 256);
  png_write_info(png, info);
  for (int y = 0; y < indices.rows; ++y) {
    png_write_row(png, const_cast<png_bytep>(indices.ptr<png_byte>(y)));
  }
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  std::fclose(f);
}

}  // namespace

template <typename TypeParam>
class ImageSegDataLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  ImageSegDataLayerTest() {
    Caffe::set_random_seed(1701);
    MakeTempDir(&root_);
    root_ += "/";
    // Five 6 x 8 images with PNG labels; list lines as the published lists
    // write them (relative), and one as DeepLab's (leading '/').
    std::ofstream list_file((root_ + "list.txt").c_str());
    for (int i = 0; i < kImages; ++i) {
      cv::Mat image(kH, kW, CV_8UC3), label(kH, kW, CV_8UC1);
      for (int y = 0; y < kH; ++y) {
        for (int x = 0; x < kW; ++x) {
          for (int c = 0; c < 3; ++c) {
            image.at<cv::Vec3b>(y, x)[c] = PixelValue(i, y, x, c);
          }
          label.at<uchar>(y, x) = LabelValue(i, y, x);
        }
      }
      const std::string name = "img" + std::to_string(i);
      cv::imwrite(root_ + name + ".png", image);
      cv::imwrite(root_ + name + "_label.png", label);
      list_file << (i == 1 ? "/" : "") << name << ".png " << name
                << "_label.png\n";
    }
    top_.push_back(&data_);
    top_.push_back(&label_);
    top_.push_back(&dim_);
  }

  LayerParameter Param(Phase phase, int batch = 1) {
    LayerParameter param;
    param.set_name("data");
    param.set_phase(phase);
    ImageDataParameter* p = param.mutable_image_data_param();
    p->set_source(root_ + "list.txt");
    p->set_root_folder(root_);
    p->set_batch_size(batch);
    p->set_label_type(ImageDataParameter_LabelType_PIXEL);
    TransformationParameter* t = param.mutable_transform_param();
    t->add_mean_value(10);
    t->add_mean_value(20);
    t->add_mean_value(30);
    return param;
  }

  // Which image (and window offset, mirror) produced batch item n: the one
  // whose pixels, crop at (oy, ox) and maybe flipped, match the data.
  bool Matches(int n, int i, int oy, int ox, bool flip) {
    const int H = data_.height(), W = data_.width();
    for (int y = 0; y < H; ++y) {
      for (int x = 0; x < W; ++x) {
        const int sy = oy + y, sx = flip ? kW - 1 - (ox + x) : ox + x;
        const bool in = sy < kH && ox + x < kW;
        for (int c = 0; c < 3; ++c) {
          const Dtype want = in ? PixelValue(i, sy, sx, c) - 10 * (c + 1) : 0;
          if (data_.data_at(n, c, y, x) != want) return false;
        }
        const Dtype lab = in ? LabelValue(i, sy, sx) : 255;
        if (label_.data_at(n, 0, y, x) != lab) return false;
      }
    }
    return true;
  }

  static const int kImages = 5, kH = 6, kW = 8;
  std::string root_;
  Blob<Dtype> data_, label_, dim_;
  vector<Blob<Dtype>*> bottom_, top_;
};

TYPED_TEST_CASE(ImageSegDataLayerTest, TestDtypesAndDevices);

TYPED_TEST(ImageSegDataLayerTest, TestReadInOrder) {
  typedef typename TypeParam::Dtype Dtype;
  ImageSegDataLayer<Dtype> layer(this->Param(TEST));
  layer.SetUp(this->bottom_, this->top_);
  EXPECT_EQ(this->data_.shape(), (vector<int>{1, 3, 6, 8}));
  EXPECT_EQ(this->label_.shape(), (vector<int>{1, 1, 6, 8}));
  EXPECT_EQ(this->dim_.shape(), (vector<int>{1, 1, 1, 2}));
  for (int pass = 0; pass < 2; ++pass) {
    for (int i = 0; i < this->kImages; ++i) {
      layer.Forward(this->bottom_, this->top_);
      EXPECT_TRUE(this->Matches(0, i, 0, 0, false)) << "image " << i;
      EXPECT_EQ(this->dim_.cpu_data()[0], 6);
      EXPECT_EQ(this->dim_.cpu_data()[1], 8);
    }
  }
}

TYPED_TEST(ImageSegDataLayerTest, TestPadToCrop) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->Param(TEST, 2);
  param.mutable_transform_param()->set_crop_size(9);
  ImageSegDataLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  EXPECT_EQ(this->data_.shape(), (vector<int>{2, 3, 9, 9}));
  // Image at the top left, padding 0 (mean subtracted) and 255 labels.
  EXPECT_TRUE(this->Matches(0, 0, 0, 0, false));
  EXPECT_TRUE(this->Matches(1, 1, 0, 0, false));
  EXPECT_EQ(this->dim_.data_at(1, 0, 0, 0), 6);
  EXPECT_EQ(this->dim_.data_at(1, 0, 0, 1), 8);
}

TYPED_TEST(ImageSegDataLayerTest, TestCentredCropInTest) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->Param(TEST);
  param.mutable_transform_param()->set_crop_height(4);
  param.mutable_transform_param()->set_crop_width(3);
  ImageSegDataLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  EXPECT_EQ(this->data_.shape(), (vector<int>{1, 3, 4, 3}));
  EXPECT_TRUE(this->Matches(0, 0, 1, 2, false));  // (6-4)/2, (8-3)/2
  EXPECT_EQ(this->dim_.cpu_data()[0], 4);
  EXPECT_EQ(this->dim_.cpu_data()[1], 3);
}

TYPED_TEST(ImageSegDataLayerTest, TestRandomCropAndMirrorInTrain) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->Param(TRAIN);
  param.mutable_transform_param()->set_crop_size(4);
  param.mutable_transform_param()->set_mirror(true);
  ImageSegDataLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_);
  std::set<int> offsets;
  int flipped = 0;
  for (int draw = 0; draw < 20; ++draw) {
    layer.Forward(this->bottom_, this->top_);
    const int i = draw % this->kImages;
    int found = 0;
    for (int oy = 0; oy <= 2; ++oy) {
      for (int ox = 0; ox <= 4; ++ox) {
        for (int f = 0; f < 2; ++f) {
          if (this->Matches(0, i, oy, ox, f)) {
            ++found;
            offsets.insert(oy * 10 + ox);
            flipped += f;
          }
        }
      }
    }
    // Image and label come from one window, flipped together.
    EXPECT_EQ(found, 1) << "draw " << draw;
  }
  EXPECT_GT(offsets.size(), 3);
  EXPECT_GT(flipped, 2);
  EXPECT_LT(flipped, 18);
}

TYPED_TEST(ImageSegDataLayerTest, TestScaleFactor) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->Param(TEST);
  param.mutable_transform_param()->add_scale_factors(2);
  ImageSegDataLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  EXPECT_EQ(this->data_.shape(), (vector<int>{1, 3, 12, 16}));
  EXPECT_EQ(this->dim_.cpu_data()[0], 12);
  EXPECT_EQ(this->dim_.cpu_data()[1], 16);
  for (int y = 0; y < 12; ++y) {
    for (int x = 0; x < 16; ++x) {
      // Labels are resized by nearest neighbour: never blended.
      EXPECT_EQ(this->label_.data_at(0, 0, y, x), LabelValue(0, y / 2, x / 2));
    }
  }
  // Bilinear image (half-pixel centres): output (4, 6) samples the source
  // at (1.75, 2.75), where the source is the plane 7 y + 3 x.
  EXPECT_NEAR(this->data_.data_at(0, 0, 4, 6), 7 * 1.75 + 3 * 2.75 - 10, 0.51);
}

TYPED_TEST(ImageSegDataLayerTest, TestScaleFactorsThenCrop) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->Param(TRAIN, 3);
  param.mutable_transform_param()->add_scale_factors(0.5);
  param.mutable_transform_param()->add_scale_factors(1.5);
  param.mutable_transform_param()->set_crop_size(5);
  ImageSegDataLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_);
  std::set<int> heights;
  for (int draw = 0; draw < 6; ++draw) {
    layer.Forward(this->bottom_, this->top_);
    EXPECT_EQ(this->data_.shape(), (vector<int>{3, 3, 5, 5}));
    for (int n = 0; n < 3; ++n) heights.insert(this->dim_.data_at(n, 0, 0, 0));
  }
  // 0.5: a 3 x 4 image padded into the crop; 1.5: 9 x 12 cropped to 5 x 5.
  EXPECT_EQ(heights, (std::set<int>{3, 5}));
}

TYPED_TEST(ImageSegDataLayerTest, TestShuffleVisitsEachImageOncePerEpoch) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->Param(TRAIN);
  param.mutable_image_data_param()->set_shuffle(true);
  ImageSegDataLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_);
  std::vector<int> order;
  for (int draw = 0; draw < 3 * this->kImages; ++draw) {
    layer.Forward(this->bottom_, this->top_);
    for (int i = 0; i < this->kImages; ++i) {
      if (this->Matches(0, i, 0, 0, false)) order.push_back(i);
    }
  }
  ASSERT_EQ(order.size(), 3 * this->kImages);
  bool identity = true;
  for (int e = 0; e < 3; ++e) {
    std::set<int> epoch(order.begin() + e * 5, order.begin() + e * 5 + 5);
    EXPECT_EQ(epoch.size(), 5);
    for (int i = 0; i < 5; ++i) identity &= order[e * 5 + i] == i;
  }
  EXPECT_FALSE(identity);
}

TYPED_TEST(ImageSegDataLayerTest, TestLabelTypes) {
  typedef typename TypeParam::Dtype Dtype;
  std::ofstream((this->root_ + "classes.txt").c_str())
      << "img0.png 3\nimg2.png 4\n";
  LayerParameter param = this->Param(TEST);
  param.mutable_image_data_param()->set_source(this->root_ + "classes.txt");
  param.mutable_image_data_param()->set_label_type(
      ImageDataParameter_LabelType_IMAGE);
  param.mutable_transform_param()->set_crop_size(7);
  {
    ImageSegDataLayer<Dtype> layer(param);
    layer.SetUp(this->bottom_, this->top_);
    layer.Forward(this->bottom_, this->top_);
    EXPECT_EQ(this->label_.data_at(0, 0, 5, 6), 3);
    EXPECT_EQ(this->label_.data_at(0, 0, 6, 0), 255);  // padding
  }
  std::ofstream((this->root_ + "images.txt").c_str()) << "img2.png\n";
  param.mutable_image_data_param()->set_source(this->root_ + "images.txt");
  param.mutable_image_data_param()->set_label_type(
      ImageDataParameter_LabelType_NONE);
  param.mutable_image_data_param()->set_ignore_label(99);
  ImageSegDataLayer<Dtype> layer(param);
  vector<Blob<Dtype>*> top(1, &this->data_);
  layer.SetUp(this->bottom_, top);
  layer.Forward(this->bottom_, top);
  EXPECT_EQ(this->data_.data_at(0, 1, 2, 3), PixelValue(2, 2, 3, 1) - 20);
}

TYPED_TEST(ImageSegDataLayerTest, TestPaletteLabels) {
  typedef typename TypeParam::Dtype Dtype;
  cv::Mat indices(6, 8, CV_8UC1);
  for (int i = 0; i < indices.total(); ++i) indices.data[i] = (i * 3) % 7;
  WritePalettePng(this->root_ + "palette.png", indices);
  cv::Mat read;
  std::string error;
  ASSERT_TRUE(ReadLabelImage(this->root_ + "palette.png", &read, &error))
      << error;
  ASSERT_EQ(read.type(), CV_8UC1);
  for (int i = 0; i < indices.total(); ++i) {
    EXPECT_EQ(read.data[i], indices.data[i]);  // indices, not colours
  }
  std::ofstream((this->root_ + "pal.txt").c_str()) << "img0.png palette.png\n";
  LayerParameter param = this->Param(TEST);
  param.mutable_image_data_param()->set_source(this->root_ + "pal.txt");
  ImageSegDataLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  EXPECT_EQ(this->label_.data_at(0, 0, 2, 5), indices.at<uchar>(2, 5));
  // A colour label image is refused rather than converted.
  cv::imwrite(this->root_ + "colour.png", cv::Mat(3, 3, CV_8UC3));
  EXPECT_FALSE(ReadLabelImage(this->root_ + "colour.png", &read, &error));
  EXPECT_NE(error.find("colour"), std::string::npos) << error;
}

class ImageSegDataLayerDeathTest : public ::testing::Test {
 protected:
  ImageSegDataLayerDeathTest() {
    ::testing::FLAGS_gtest_death_test_style = "threadsafe";
    MakeTempDir(&root_);
    root_ += "/";
    cv::imwrite(root_ + "a.png", cv::Mat(4, 4, CV_8UC3, cv::Scalar(9)));
    cv::imwrite(root_ + "a_label.png", cv::Mat(4, 4, CV_8UC1, cv::Scalar(1)));
    cv::imwrite(root_ + "small_label.png", cv::Mat(3, 4, CV_8UC1));
    top_.push_back(&data_);
    top_.push_back(&label_);
  }
  void Run(const std::string& lines,
           const TransformationParameter& transform =
               TransformationParameter(),
           ImageDataParameter_LabelType label_type =
               ImageDataParameter_LabelType_PIXEL) {
    std::ofstream((root_ + "list.txt").c_str()) << lines;
    LayerParameter param;
    *param.mutable_transform_param() = transform;
    param.set_phase(TEST);
    param.mutable_image_data_param()->set_source(root_ + "list.txt");
    param.mutable_image_data_param()->set_root_folder(root_);
    param.mutable_image_data_param()->set_label_type(label_type);
    ImageSegDataLayer<float> layer(param);
    layer.SetUp(bottom_, top_);
    layer.Forward(bottom_, top_);
  }
  std::string root_;
  Blob<float> data_, label_;
  vector<Blob<float>*> bottom_, top_;
};

TEST_F(ImageSegDataLayerDeathTest, TestMissingFiles) {
  EXPECT_DEATH(Run("a.png a_label.png\nb.png a_label.png\n"),
               "cannot read image '.*/b.png' \\(.*list.txt line 2\\)");
  EXPECT_DEATH(Run("a.png nope.png\n"),
               "cannot read label '.*/nope.png' \\(.*list.txt line 1\\)");
  EXPECT_DEATH(Run("a.png\n"), "line 1 has no label after 'a.png'");
  EXPECT_DEATH(Run(""), "names no images");
}

TEST_F(ImageSegDataLayerDeathTest, TestBadClassIds) {
  // A negative class would index outside the scores in SoftmaxWithLoss.
  const TransformationParameter t;
  const ImageDataParameter_LabelType image = ImageDataParameter_LabelType_IMAGE;
  EXPECT_DEATH(Run("a.png -1\n", t, image),
               "line 1: label_type IMAGE needs a class id from 0 to "
               "2147483647, got '-1'");
  EXPECT_DEATH(Run("a.png 1\na.png 4294967297\n", t, image),
               "line 2: .* got '4294967297'");
  EXPECT_DEATH(Run("a.png 2x\n", t, image), "got '2x'");
}

TEST_F(ImageSegDataLayerDeathTest, TestMissingList) {
  LayerParameter param;
  param.set_phase(TEST);
  param.mutable_image_data_param()->set_source(root_ + "absent.txt");
  ImageSegDataLayer<float> layer(param);
  EXPECT_DEATH(layer.SetUp(bottom_, top_),
               "cannot open the list file '.*absent.txt'");
}

TEST_F(ImageSegDataLayerDeathTest, TestLabelSizeMismatch) {
  EXPECT_DEATH(Run("a.png small_label.png\n"),
               "label '.*small_label.png' is 4 x 3 but image");
}

TEST_F(ImageSegDataLayerDeathTest, TestBadScaleAndMean) {
  // Either would turn every batch into zeros or NaN without a word.
  TransformationParameter t;
  t.set_scale(0);
  EXPECT_DEATH(Run("a.png a_label.png\n", t),
               "transform_param scale must be a positive number; got 0");
  t.set_scale(NAN);
  EXPECT_DEATH(Run("a.png a_label.png\n", t),
               "transform_param scale must be a positive number; got nan");
  t.set_scale(1);
  t.add_mean_value(104);
  t.add_mean_value(NAN);
  t.add_mean_value(123);
  EXPECT_DEATH(Run("a.png a_label.png\n", t), "mean_value 1 is nan");
}

}  // namespace caffe
