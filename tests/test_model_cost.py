"""Model costs against published figures: XLA-counted FLOPs against the DeepLab model zoo and
torchvision's weight docs, and DeepLab v1's parameter count against its paper.

The zoo lists multiply-adds for one 513x513 image at output stride 16; a multiply-add is two
FLOPs. Measured here (jax 0.10, CPU backend): Xception-65 DeepLabV3+ 108.45 GFLOPs, 41,055,413
parameters; MobileNetV2 DeepLabV3 5.61 GFLOPs, 2,113,557 parameters (21 classes).
"""

import pytest
from torchvision.models import MobileNet_V3_Large_Weights
from torchvision.models import segmentation

from conftest import load_config
from deeplab_jax.convert import torchvision as tv_convert
from deeplab_jax.models import create_model
from deeplab_jax.models.cost import inference_cost


@pytest.mark.parametrize('recipe,zoo_multiply_adds,measured_flops,measured_params', [
    ('voc_xception65', 54.17e9, 108.45e9, 41_055_413),
    ('voc_mobilenetv2', 2.75e9, 5.61e9, 2_113_557)])
def test_inference_flops_match_the_model_zoo(recipe, zoo_multiply_adds, measured_flops,
                                             measured_params):
  config = load_config(recipe)
  assert config.model.output_stride == 16
  flops, params = inference_cost(create_model(config.model), (513, 513))
  assert abs(flops / (2 * zoo_multiply_adds) - 1) < 0.10
  # The figures the README reports.
  assert flops == pytest.approx(measured_flops, rel=0.005)
  assert params == measured_params


def test_deeplab_v1_large_fov_has_the_papers_parameter_count():
  # Chen et al. 2015, Table 2: DeepLab-LargeFOV (3x3 fc6 at rate 12, 1024 channels) has 20.5M.
  _, params = inference_cost(create_model(load_config('voc_v1_vgg16').model), (65, 65))
  assert round(params / 1e6, 1) == 20.5


def padding_tap_macs(size: int, rate: int, channels_in: int, channels_out: int) -> int:
  """Multiply-adds of a 3x3 conv at `rate` on a size x size map where a tap reads padding: our
  convolution skips them (`convolution.conv2d`), a dense count includes them."""
  live = sum(max(0, size - abs(offset)) for offset in (-rate, 0, rate))  # Per axis.
  return (9 * size ** 2 - live ** 2) * channels_in * channels_out


def resize_flops(in_size: int, out_size: int, channels: int) -> int:
  """XLA's count of our half-pixel bilinear resize of a square map: one matmul with the
  interpolation matrix per axis (`layers.resize_bilinear`)."""
  return 2 * (out_size * in_size ** 2 + out_size ** 2 * in_size) * channels


@pytest.mark.parametrize('arch,size,published,skipped_macs,resize,measured_flops', [
    pytest.param('mobilenet_v3_large', 224, MobileNet_V3_Large_Weights.IMAGENET1K_V1, 0, 0,
                 0.4425e9, id='mobilenet_v3_large'),
    pytest.param('deeplabv3_mobilenet_v3_large', 520,
                 segmentation.DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1,
                 sum(padding_tap_macs(33, rate, 960, 256) for rate in (12, 24, 36)),
                 resize_flops(33, 520, 21), 11.46e9, id='deeplabv3_mobilenet_v3_large'),
    pytest.param('lraspp_mobilenet_v3_large', 520,
                 segmentation.LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1, 0,
                 resize_flops(65, 520, 21) + resize_flops(33, 65, 128), 5.157e9,
                 id='lraspp_mobilenet_v3_large')])
def test_inference_flops_match_torchvisions_published_multiply_adds(
    arch, size, published, skipped_macs, resize, measured_flops):
  """torchvision's `_ops` (shown as GFLOPS in its docs) counts multiply-adds, of convolutions and
  linear layers only: torch.utils.flop_counter.FlopCounterMode, which counts 2 FLOPs per
  multiply-add, gives exactly twice (0.433 GFLOPs for mobilenet_v3_large at 224x224, 4.172 for
  lraspp_mobilenet_v3_large at 520x520), and the paper gives MobileNetV3-Large 219M
  multiply-adds. XLA also counts 2 FLOPs per multiply-add, so we compare with twice `_ops`,
  corrected by what we compute otherwise:

  - deeplabv3_mobilenet_v3_large: the taps of its ASPP's 3x3 convs at rates 12, 24 and 36 on
    the 33x33 map (960 -> 256 channels) mostly read padding, which our convolution skips: 9.87
    of a dense count's GFLOPs are never computed (uncorrected, XLA counts 11.46 GFLOPs, 45%
    below 2 x 10.452). The published figure includes the auxiliary head (0.016G multiply-adds),
    which inference does not need.
  - lraspp_mobilenet_v3_large: our bilinear upsampling is a matmul with the interpolation
    matrix, 0.88 GFLOPs (65x65 -> 520x520 over 21 classes, 33x33 -> 65x65 over 128 channels),
    which torchvision does not count (uncorrected, XLA counts 5.16 GFLOPs, 24% above 2 x 2.086).

  What remains (hard-swish, gates, additions) is 2% or less. Lowering at 520x520 takes ~2 s.
  """
  num_classes = None if arch in tv_convert.BACKBONE_ONLY else 21
  model = tv_convert.create_torchvision_model(arch, num_classes)
  flops, _ = inference_cost(model, (size, size))
  expected = 2 * (published.meta['_ops'] * 1e9 - skipped_macs) + resize
  assert abs(flops / expected - 1) < 0.10
  assert flops == pytest.approx(measured_flops, rel=0.005)
