#include <opencv2/core/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc/imgproc.hpp>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <fstream>  // NOLINT(readability/streams)
#include <sstream>
#include <string>
#include <vector>

#include "caffe/layers/image_seg_data_layer.hpp"
#include "caffe/util/label_image.hpp"
#include "caffe/util/rng.hpp"

namespace caffe {

namespace {

std::string JoinPath(const std::string& root, const std::string& path) {
  if (root.empty()) return path;
  const bool root_slash = root[root.size() - 1] == '/';
  const bool path_slash = !path.empty() && path[0] == '/';
  if (root_slash && path_slash) return root + path.substr(1);
  if (root_slash || path_slash) return root + path;
  return root + "/" + path;
}

// Pixels as stored: a label image has no EXIF orientation, so rotating the
// photo by its tag would turn it against its labels (a 180 degree tag keeps
// the size, and the mismatch would pass unseen). PIL reads them so too.
int ImreadFlags(bool color) {
  return (color ? cv::IMREAD_COLOR : cv::IMREAD_GRAYSCALE) |
      cv::IMREAD_IGNORE_ORIENTATION;
}

}  // namespace

template <typename Dtype>
ImageSegDataLayer<Dtype>::~ImageSegDataLayer<Dtype>() {
  this->StopInternalThread();
}

template <typename Dtype>
std::string ImageSegDataLayer<Dtype>::Where(const Sample& sample) const {
  std::ostringstream s;
  s << " (" << this->layer_param_.image_data_param().source() << " line "
    << sample.line << ")";
  return s.str();
}

// cpp_lint.py allows DataLayerSetUp only in the data layers Caffe ships.
template <typename Dtype>
void ImageSegDataLayer<Dtype>::DataLayerSetUp(  // NOLINT
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const ImageDataParameter& p = this->layer_param_.image_data_param();
  const TransformationParameter& t = this->layer_param_.transform_param();
  const string& name = this->layer_param_.name();
  CHECK(!t.has_mean_file()) << "ImageSegData layer '" << name
      << "': mean_file is not supported; give mean_value (one per channel).";
  CHECK_GT(p.batch_size(), 0) << "ImageSegData: batch_size must be positive.";
  CHECK((p.new_height() == 0) == (p.new_width() == 0)) << "ImageSegData '"
      << name << "': give both new_height and new_width, or neither.";
  for (int i = 0; i < t.scale_factors_size(); ++i) {
    CHECK(t.scale_factors(i) > 0 && std::isfinite(t.scale_factors(i)))
        << "ImageSegData '" << name << "': scale_factors must be positive; "
        << "got " << t.scale_factors(i) << ".";
  }
  CHECK(std::isfinite(t.scale()) && t.scale() > 0) << "ImageSegData '"
      << name << "': transform_param scale must be a positive number; got "
      << t.scale() << ".";
  for (int i = 0; i < t.mean_value_size(); ++i) {
    CHECK(std::isfinite(t.mean_value(i))) << "ImageSegData '" << name
        << "': mean_value " << i << " is " << t.mean_value(i)
        << "; give the channel's mean intensity.";
  }
  crop_height_ = t.has_crop_height() ? t.crop_height() : t.crop_size();
  crop_width_ = t.has_crop_width() ? t.crop_width() : t.crop_size();
  CHECK((crop_height_ == 0) == (crop_width_ == 0)) << "ImageSegData '"
      << name << "': give crop_size, or both crop_height and crop_width.";

  // Read the list; every file must be there before training starts.
  const string& source = p.source();
  std::ifstream list(source.c_str());
  CHECK(list.good()) << "ImageSegData '" << name << "': cannot open the list "
      << "file '" << source << "' (image_data_param.source).";
  samples_.clear();
  string text;
  for (int line = 1; std::getline(list, text); ++line) {
    std::istringstream tokens(text);
    string image, label;
    if (!(tokens >> image)) continue;  // blank line
    Sample s;
    s.image = JoinPath(p.root_folder(), image);
    s.class_id = p.ignore_label();
    s.line = line;
    if (p.label_type() != ImageDataParameter_LabelType_NONE) {
      CHECK(tokens >> label) << "ImageSegData '" << name << "': " << source
          << " line " << line << " has no label after '" << image
          << "' (label_type " << ImageDataParameter_LabelType_Name(
              p.label_type()) << " needs one; use label_type: NONE for "
          << "unlabelled lists).";
      if (p.label_type() == ImageDataParameter_LabelType_PIXEL) {
        s.label = JoinPath(p.root_folder(), label);
      } else {
        char* end = NULL;
        const long id = std::strtol(label.c_str(), &end, 10);  // NOLINT
        // A negative class would index outside the scores downstream.
        CHECK(*end == '\0' && id >= 0 && id <= INT_MAX) << "ImageSegData '"
            << name << "': " << source << " line " << line
            << ": label_type IMAGE needs a class id from 0 to " << INT_MAX
            << ", got '" << label << "'.";
        s.class_id = static_cast<int>(id);
      }
    }
    CHECK_EQ(access(s.image.c_str(), R_OK), 0) << "ImageSegData '" << name
        << "': cannot read image '" << s.image << "'" << Where(s)
        << "; check root_folder and the list.";
    if (!s.label.empty()) {
      CHECK_EQ(access(s.label.c_str(), R_OK), 0) << "ImageSegData '" << name
          << "': cannot read label '" << s.label << "'" << Where(s)
          << "; check root_folder and the list.";
    }
    samples_.push_back(s);
  }
  CHECK(!samples_.empty()) << "ImageSegData '" << name << "': the list '"
      << source << "' names no images.";
  LOG(INFO) << "ImageSegData: " << samples_.size() << " images from "
            << source;

  shuffle_rng_.reset(new Caffe::RNG(caffe_rng_rand()));
  transform_rng_.reset(new Caffe::RNG(caffe_rng_rand()));
  if (p.shuffle()) ShuffleSamples();
  sample_id_ = 0;
  if (p.rand_skip()) {
    sample_id_ = caffe_rng_rand() % p.rand_skip() % samples_.size();
  }

  // The first image fixes the channel count and, without a crop, the size.
  cv::Mat first = cv::imread(samples_[0].image, ImreadFlags(p.is_color()));
  CHECK(!first.empty()) << "ImageSegData '" << name << "': cannot decode "
      << "image '" << samples_[0].image << "'" << Where(samples_[0]) << ".";
  channels_ = first.channels();
  mean_.assign(channels_, Dtype(0));
  if (t.mean_value_size() > 0) {
    CHECK(t.mean_value_size() == 1 || t.mean_value_size() == channels_)
        << "ImageSegData '" << name << "': give 1 or " << channels_
        << " mean_value entries, not " << t.mean_value_size() << ".";
    for (int c = 0; c < channels_; ++c) {
      mean_[c] = t.mean_value(t.mean_value_size() == 1 ? 0 : c);
    }
  }
  int height = crop_height_, width = crop_width_;
  if (height == 0) {
    height = p.new_height() ? p.new_height() : first.rows;
    width = p.new_width() ? p.new_width() : first.cols;
  }
  const int batch = p.batch_size();
  top[0]->Reshape(batch, channels_, height, width);
  if (top.size() > 1) top[1]->Reshape(batch, 1, height, width);
  if (top.size() > 2) top[2]->Reshape(batch, 1, 1, 2);
  dims_.resize(this->prefetch_.size());
  for (int i = 0; i < this->prefetch_.size(); ++i) {
    this->prefetch_[i]->data_.Reshape(batch, channels_, height, width);
    this->prefetch_[i]->label_.Reshape(batch, 1, height, width);
    dims_[i].reset(new Blob<Dtype>(batch, 1, 1, 2));
  }
}

template <typename Dtype>
void ImageSegDataLayer<Dtype>::ShuffleSamples() {
  caffe::rng_t* rng = static_cast<caffe::rng_t*>(shuffle_rng_->generator());
  shuffle(samples_.begin(), samples_.end(), rng);
}

template <typename Dtype>
int ImageSegDataLayer<Dtype>::Rand(int n) {
  caffe::rng_t* rng = static_cast<caffe::rng_t*>(transform_rng_->generator());
  return n > 1 ? static_cast<int>((*rng)() % n) : 0;
}

template <typename Dtype>
void ImageSegDataLayer<Dtype>::Prepare(const Sample& sample, cv::Mat* out_image,
    cv::Mat* out_labels) {
  const ImageDataParameter& p = this->layer_param_.image_data_param();
  const TransformationParameter& t = this->layer_param_.transform_param();
  const string& name = this->layer_param_.name();
  cv::Mat image = cv::imread(sample.image, ImreadFlags(p.is_color()));
  CHECK(!image.empty()) << "ImageSegData '" << name << "': cannot decode "
      << "image '" << sample.image << "'" << Where(sample) << ".";
  CHECK_EQ(image.channels(), channels_) << "ImageSegData '" << name
      << "': image '" << sample.image << "'" << Where(sample)
      << " has another channel count than the first image.";
  cv::Mat labels;
  if (p.label_type() == ImageDataParameter_LabelType_PIXEL) {
    string error;
    CHECK(ReadLabelImage(sample.label, &labels, &error)) << "ImageSegData '"
        << name << "': cannot use label image '" << sample.label << "'"
        << Where(sample) << ": " << error << ".";
    CHECK(labels.rows == image.rows && labels.cols == image.cols)
        << "ImageSegData '" << name << "': label '" << sample.label << "' is "
        << labels.cols << " x " << labels.rows << " but image '"
        << sample.image << "' is " << image.cols << " x " << image.rows
        << Where(sample) << ".";
  }  // otherwise labels stays empty: Fill writes the sample's class
  if (p.new_height() > 0) {
    cv::resize(image, image, cv::Size(p.new_width(), p.new_height()), 0, 0,
               cv::INTER_LINEAR);
    if (!labels.empty()) {
      cv::resize(labels, labels, cv::Size(p.new_width(), p.new_height()), 0,
                 0, cv::INTER_NEAREST);
    }
  }
  if (t.scale_factors_size() > 0) {
    const float s = t.scale_factors(Rand(t.scale_factors_size()));
    if (s != 1) {
      const cv::Size size(std::max(1, static_cast<int>(image.cols * s + 0.5)),
                          std::max(1, static_cast<int>(image.rows * s + 0.5)));
      cv::resize(image, image, size, 0, 0, cv::INTER_LINEAR);
      if (!labels.empty()) {
        cv::resize(labels, labels, size, 0, 0, cv::INTER_NEAREST);
      }
    }
  }
  if (t.mirror() && Rand(2)) {
    cv::flip(image, image, 1);
    if (!labels.empty()) cv::flip(labels, labels, 1);
  }
  *out_image = image;
  *out_labels = labels;
}

template <typename Dtype>
void ImageSegDataLayer<Dtype>::Fill(const cv::Mat& image,
    const cv::Mat& labels, int class_id, Dtype* data, Dtype* label,
    Dtype* dim) {
  const ImageDataParameter& p = this->layer_param_.image_data_param();
  const TransformationParameter& t = this->layer_param_.transform_param();
  const int h = image.rows, w = image.cols;
  const int out_h = crop_height_ ? crop_height_ : h;
  const int out_w = crop_width_ ? crop_width_ : w;
  // Pad bottom / right up to the crop, then place the crop.
  const int span_y = std::max(h, out_h) - out_h;
  const int span_x = std::max(w, out_w) - out_w;
  const bool train = this->phase_ == TRAIN;
  const int off_y = train ? Rand(span_y + 1) : span_y / 2;
  const int off_x = train ? Rand(span_x + 1) : span_x / 2;
  const Dtype scale = t.scale();
  const Dtype ignore = p.ignore_label();
  const int plane = out_h * out_w;
  for (int y = 0; y < out_h; ++y) {
    const int sy = off_y + y;
    const bool inside_y = sy < h;
    const uchar* pixel = inside_y ? image.ptr<uchar>(sy) : NULL;
    for (int x = 0; x < out_w; ++x) {
      const int sx = off_x + x;
      const bool inside = inside_y && sx < w;
      for (int c = 0; c < channels_; ++c) {
        data[c * plane + y * out_w + x] = inside ?
            (static_cast<Dtype>(pixel[sx * channels_ + c]) - mean_[c]) * scale
            : Dtype(0);
      }
      if (label) {
        Dtype v = ignore;
        if (inside) {
          v = labels.empty() ? static_cast<Dtype>(class_id) :
              static_cast<Dtype>(labels.at<uchar>(sy, sx));
        }
        label[y * out_w + x] = v;
      }
    }
  }
  dim[0] = std::min(h - off_y, out_h);
  dim[1] = std::min(w - off_x, out_w);
}

template <typename Dtype>
void ImageSegDataLayer<Dtype>::load_batch(Batch<Dtype>* batch) {
  const ImageDataParameter& p = this->layer_param_.image_data_param();
  const int batch_size = p.batch_size();
  Blob<Dtype>* dims = NULL;
  for (int i = 0; i < this->prefetch_.size(); ++i) {
    if (this->prefetch_[i].get() == batch) dims = dims_[i].get();
  }
  CHECK(dims) << "ImageSegData: unknown prefetch batch.";
  int height = 0, width = 0;
  cv::Mat image, labels;
  for (int item = 0; item < batch_size; ++item) {
    const Sample& sample = samples_[sample_id_];
    Prepare(sample, &image, &labels);
    const int h = crop_height_ ? crop_height_ : image.rows;
    const int w = crop_width_ ? crop_width_ : image.cols;
    if (item == 0) {
      height = h;
      width = w;
      batch->data_.Reshape(batch_size, channels_, height, width);
      batch->label_.Reshape(batch_size, 1, height, width);
    } else {
      CHECK(h == height && w == width) << "ImageSegData '"
          << this->layer_param_.name() << "': image '" << sample.image
          << "'" << Where(sample) << " comes out " << w << " x " << h
          << " but this batch is " << width << " x " << height
          << "; set a crop_size or batch_size: 1.";
    }
    const int offset = item * height * width;
    Fill(image, labels, sample.class_id,
         batch->data_.mutable_cpu_data() + offset * channels_,
         this->output_labels_ ?
             batch->label_.mutable_cpu_data() + offset : NULL,
         dims->mutable_cpu_data() + item * 2);
    if (++sample_id_ >= static_cast<int>(samples_.size())) {
      sample_id_ = 0;
      if (p.shuffle()) ShuffleSamples();
    }
  }
}

template <typename Dtype>
void ImageSegDataLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  BasePrefetchingDataLayer<Dtype>::Forward_cpu(bottom, top);
  if (top.size() > 2) {
    for (int i = 0; i < this->prefetch_.size(); ++i) {
      if (this->prefetch_[i].get() == this->prefetch_current_) {
        top[2]->CopyFrom(*dims_[i], false, true);
      }
    }
  }
}

INSTANTIATE_CLASS(ImageSegDataLayer);
REGISTER_LAYER_CLASS(ImageSegData);

}  // namespace caffe
