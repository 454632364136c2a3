#ifndef CAFFE_IMAGE_SEG_DATA_LAYER_HPP_
#define CAFFE_IMAGE_SEG_DATA_LAYER_HPP_

#include <opencv2/core/core.hpp>

#include <string>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/base_data_layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Images with per-pixel labels from a list file (DeepLab's
 *        ImageSegData layer), prefetched in a background thread.
 *
 * Tops: data N x C x H x W, optional label N x 1 x H x W, optional data_dim
 * N x 1 x 1 x 2 (rows and columns of image content in each output, counted
 * from the top left; the rest is padding).
 *
 * image_data_param: source (one "image [label]" line per sample; paths are
 * joined to root_folder, with or without a leading '/'), batch_size,
 * shuffle, rand_skip, is_color, new_height / new_width, label_type (NONE:
 * no label token, label = ignore_label; IMAGE: an integer class for the
 * whole image; PIXEL: a label image, 8-bit grey or palette PNG, whose
 * values are the classes), ignore_label.
 *
 * transform_param: mean_value (1 or C values), scale, mirror, crop_size or
 * crop_height / crop_width, scale_factors. Per sample: resize by one factor
 * drawn from scale_factors (bilinear image, nearest label); flip both when
 * mirror draws it; pad the bottom and right up to the crop (image with the
 * mean, so 0 after subtraction; label with ignore_label); crop at a random
 * offset in TRAIN, centred in TEST; subtract the mean and multiply by scale.
 */
template <typename Dtype>
class ImageSegDataLayer : public BasePrefetchingDataLayer<Dtype> {
 public:
  explicit ImageSegDataLayer(const LayerParameter& param)
      : BasePrefetchingDataLayer<Dtype>(param) {}
  virtual ~ImageSegDataLayer();
  virtual void DataLayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "ImageSegData"; }
  virtual inline int ExactNumBottomBlobs() const { return 0; }
  virtual inline int MinTopBlobs() const { return 1; }
  virtual inline int MaxTopBlobs() const { return 3; }

  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
    Forward_cpu(bottom, top);
  }

 protected:
  struct Sample {
    std::string image;
    std::string label;  // label image path (PIXEL)
    int class_id;       // the image's class (IMAGE)
    int line;           // 1-based line in the list file, for messages
  };

  virtual void load_batch(Batch<Dtype>* batch);
  void ShuffleSamples();
  int Rand(int n);
  /// Reads one sample, resized (new_height / new_width, a scale factor)
  /// and maybe mirrored; labels only for label_type PIXEL.
  void Prepare(const Sample& sample, cv::Mat* image, cv::Mat* labels);
  /// Pads, crops and mean-subtracts a prepared sample into one batch item;
  /// empty labels (label_type NONE / IMAGE) mean class_id everywhere.
  void Fill(const cv::Mat& image, const cv::Mat& labels, int class_id,
      Dtype* data, Dtype* label, Dtype* dim);
  std::string Where(const Sample& sample) const;

  std::vector<Sample> samples_;
  int sample_id_;
  int crop_height_, crop_width_;
  int channels_;
  std::vector<Dtype> mean_;
  shared_ptr<Caffe::RNG> shuffle_rng_;
  shared_ptr<Caffe::RNG> transform_rng_;
  // data_dim of each prefetch batch, parallel to prefetch_; touched only by
  // whoever holds that batch (the queues order the hand-over).
  std::vector<shared_ptr<Blob<Dtype> > > dims_;
};

}  // namespace caffe

#endif  // CAFFE_IMAGE_SEG_DATA_LAYER_HPP_
