#include <algorithm>
#include <vector>

#include "caffe/layers/interp_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void InterpLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const InterpParameter& p = this->layer_param_.interp_param();
  pad_beg_ = p.pad_beg();
  pad_end_ = p.pad_end();
  CHECK(pad_beg_ <= 0 && pad_end_ <= 0) << "Interp layer '"
      << this->layer_param_.name() << "': pad_beg and pad_end must be <= 0 "
      << "(negative pads crop the input); got " << pad_beg_ << " and "
      << pad_end_ << ".";
  const bool factors = p.has_shrink_factor() || p.has_zoom_factor();
  const bool size = p.has_height() || p.has_width();
  const int rules = (bottom.size() == 2) + factors + size;
  CHECK_EQ(rules, 1) << "Interp layer '" << this->layer_param_.name()
      << "': give exactly one of a second bottom, shrink_factor/zoom_factor, "
      << "or height and width.";
  if (factors) {
    CHECK_GE(p.shrink_factor(), 1) << "Interp: shrink_factor must be >= 1.";
    CHECK_GE(p.zoom_factor(), 1) << "Interp: zoom_factor must be >= 1.";
  }
  if (size) {
    CHECK(p.has_height() && p.has_width() && p.height() > 0 && p.width() > 0)
        << "Interp layer '" << this->layer_param_.name()
        << "': height and width must both be given and positive.";
  }
}

template <typename Dtype>
void InterpLayer<Dtype>::Taps(int in, int out, std::vector<int>* lo,
    std::vector<int>* step, std::vector<Dtype>* frac) {
  lo->resize(out);
  step->resize(out);
  frac->resize(out);
  const double ratio = out > 1 ? static_cast<double>(in - 1) / (out - 1) : 0;
  for (int i = 0; i < out; ++i) {
    const double src = ratio * i;
    const int l = std::min(static_cast<int>(src), in - 1);
    (*lo)[i] = l;
    (*step)[i] = l < in - 1 ? 1 : 0;
    (*frac)[i] = static_cast<Dtype>(src - l);
  }
}

template <typename Dtype>
void InterpLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  CHECK_EQ(bottom[0]->num_axes(), 4) << "Interp layer '"
      << this->layer_param_.name() << "' needs a 4-D N x C x H x W bottom; "
      << "got " << bottom[0]->shape_string() << ".";
  const InterpParameter& p = this->layer_param_.interp_param();
  height_in_ = bottom[0]->height();
  width_in_ = bottom[0]->width();
  height_eff_ = height_in_ + pad_beg_ + pad_end_;
  width_eff_ = width_in_ + pad_beg_ + pad_end_;
  CHECK(height_eff_ > 0 && width_eff_ > 0) << "Interp layer '"
      << this->layer_param_.name() << "': the pads crop away the whole "
      << height_in_ << " x " << width_in_ << " input.";
  if (bottom.size() == 2) {
    CHECK_GE(bottom[1]->num_axes(), 4) << "Interp: the second bottom gives "
        << "the output size and must be 4-D.";
    height_out_ = bottom[1]->height();
    width_out_ = bottom[1]->width();
  } else if (p.has_shrink_factor() || p.has_zoom_factor()) {
    height_out_ = (height_eff_ - 1) / p.shrink_factor() + 1;
    width_out_ = (width_eff_ - 1) / p.shrink_factor() + 1;
    height_out_ += (height_out_ - 1) * (p.zoom_factor() - 1);
    width_out_ += (width_out_ - 1) * (p.zoom_factor() - 1);
  } else {
    height_out_ = p.height();
    width_out_ = p.width();
  }
  CHECK(height_out_ > 0 && width_out_ > 0) << "Interp: empty output.";
  top[0]->Reshape(bottom[0]->num(), bottom[0]->channels(), height_out_,
      width_out_);
  Taps(height_eff_, height_out_, &lo_y_, &step_y_, &frac_y_);
  Taps(width_eff_, width_out_, &lo_x_, &step_x_, &frac_x_);
}

template <typename Dtype>
void InterpLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int planes = bottom[0]->num() * bottom[0]->channels();
  const int in_size = height_in_ * width_in_;
  const int out_size = height_out_ * width_out_;
  const int offset = -pad_beg_ * width_in_ - pad_beg_;
  const Dtype* in = bottom[0]->cpu_data();
  Dtype* out = top[0]->mutable_cpu_data();
#ifdef _OPENMP
#pragma omp parallel for if (planes * out_size > 65536)
#endif
  for (int c = 0; c < planes; ++c) {
    const Dtype* src = in + c * in_size + offset;
    Dtype* dst = out + c * out_size;
    for (int y = 0; y < height_out_; ++y) {
      const Dtype* row0 = src + lo_y_[y] * width_in_;
      const Dtype* row1 = row0 + step_y_[y] * width_in_;
      const Dtype fy = frac_y_[y];
      for (int x = 0; x < width_out_; ++x) {
        const int x0 = lo_x_[x], x1 = x0 + step_x_[x];
        const Dtype fx = frac_x_[x];
        const Dtype top_val = row0[x0] + fx * (row0[x1] - row0[x0]);
        const Dtype bot_val = row1[x0] + fx * (row1[x1] - row1[x0]);
        dst[y * width_out_ + x] = top_val + fy * (bot_val - top_val);
      }
    }
  }
}

template <typename Dtype>
void InterpLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (bottom.size() == 2) {
    CHECK(!propagate_down[1]) << "Interp layer '" << this->layer_param_.name()
        << "' has no gradient for its second bottom (it only gives the size); "
        << "set propagate_down: false for it.";
  }
  if (!propagate_down[0]) return;
  const int planes = bottom[0]->num() * bottom[0]->channels();
  const int in_size = height_in_ * width_in_;
  const int out_size = height_out_ * width_out_;
  const int offset = -pad_beg_ * width_in_ - pad_beg_;
  const Dtype* out_diff = top[0]->cpu_diff();
  Dtype* in_diff = bottom[0]->mutable_cpu_diff();
  caffe_set(bottom[0]->count(), Dtype(0), in_diff);
#ifdef _OPENMP
#pragma omp parallel for if (planes * out_size > 65536)
#endif
  for (int c = 0; c < planes; ++c) {
    Dtype* src = in_diff + c * in_size + offset;
    const Dtype* dst = out_diff + c * out_size;
    for (int y = 0; y < height_out_; ++y) {
      Dtype* row0 = src + lo_y_[y] * width_in_;
      Dtype* row1 = row0 + step_y_[y] * width_in_;
      const Dtype fy = frac_y_[y];
      for (int x = 0; x < width_out_; ++x) {
        const int x0 = lo_x_[x], x1 = x0 + step_x_[x];
        const Dtype fx = frac_x_[x];
        const Dtype g = dst[y * width_out_ + x];
        row0[x0] += (1 - fy) * (1 - fx) * g;
        row0[x1] += (1 - fy) * fx * g;
        row1[x0] += fy * (1 - fx) * g;
        row1[x1] += fy * fx * g;
      }
    }
  }
}

INSTANTIATE_CLASS(InterpLayer);
REGISTER_LAYER_CLASS(Interp);

}  // namespace caffe
