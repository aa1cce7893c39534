"""Model costs against published figures: XLA-counted FLOPs against the DeepLab model zoo, and
DeepLab v1's parameter count against its paper.

The zoo lists multiply-adds for one 513x513 image at output stride 16; a multiply-add is two
FLOPs. Measured here (jax 0.10, CPU backend): Xception-65 DeepLabV3+ 108.45 GFLOPs, 41,055,413
parameters; MobileNetV2 DeepLabV3 5.61 GFLOPs, 2,113,557 parameters (21 classes).
"""

import pytest

from conftest import load_config
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
