"""Parameters and XLA-counted inference FLOPs of every recipe's model on one 513x513 image.

  python benchmarks/model_cost.py

Nothing runs on data: the models are lowered and XLA's cost analysis read, so this takes
seconds on a laptop. The output is the README's model table.
"""

import importlib.util
import pathlib

from deeplab_jax.models import create_model
from deeplab_jax.models.cost import inference_cost

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / 'configs'
RECIPES = ('voc_v1_vgg16', 'voc_v2_resnet101', 'voc', 'voc_xception65', 'voc_mobilenetv2',
           'voc_mobilenetv3')


def load_config(name: str):
  spec = importlib.util.spec_from_file_location(name, CONFIGS / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def main():
  print('| recipe | model | output stride | parameters | GFLOPs, 513x513 |')
  print('|---|---|---|---|---|')
  for name in RECIPES:
    model = load_config(name).model
    for output_stride in sorted({model.output_stride, 16}):
      model.output_stride = output_stride
      flops, params = inference_cost(create_model(model), (513, 513))
      print(f'| `configs/{name}.py` | {model.architecture} {model.backbone} | {output_stride} | '
            f'{params:,} | {flops / 1e9:.2f} |')


if __name__ == '__main__':
  main()
