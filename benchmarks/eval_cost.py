"""XLA-counted FLOPs of evaluating one ADE20K-sized photo with configs/ade20k.py: padded whole to
2049 x 2049 (the recipe before resized evaluation) against mmsegmentation's protocol (resized to
fit 2048 x 512, in the least k * 16 + 1 frame, probabilities resized back).

  python benchmarks/eval_cost.py --height=1500 --width=2000

Nothing runs: the evaluation programs are lowered and XLA's cost analysis read.
"""

import importlib.util
import pathlib

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

from deeplab_jax import inference
from deeplab_jax.models import create_model

flags.DEFINE_integer('height', 1500, 'The photo\'s height.')
flags.DEFINE_integer('width', 2000, 'The photo\'s width.')
FLAGS = flags.FLAGS
CONFIG = pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'ade20k.py'


def eval_flops(predict_fn, variables, frame: tuple[int, int]) -> float:
  images = jax.ShapeDtypeStruct((1, *frame, 3), jnp.uint8)
  sizes = jax.ShapeDtypeStruct((1, 2), jnp.int32)
  return jax.jit(predict_fn).lower(variables, images, sizes).cost_analysis()['flops']


def main(_):
  spec = importlib.util.spec_from_file_location('ade20k', CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  model = create_model(config.model)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 65, 65, 3)),
                                                train=False))
  predict_fn = inference.make_predict_fn(model, config)
  photo = (FLAGS.height, FLAGS.width)
  before = eval_flops(predict_fn, variables, (2049, 2049))
  resized = tuple(int(side) for side in inference.resized_sizes(
      photo, config.eval.resize, config.eval.resize_size))
  stride = config.model.output_stride
  frame = tuple(-(-(side - 1) // stride) * stride + 1 for side in resized)
  resized_fn = inference.with_resizing(predict_fn, config.eval.resize, config.eval.resize_size,
                                       frame, config.model.align_corners)
  after = eval_flops(resized_fn, variables, photo)
  print(f'{photo[0]}x{photo[1]} photo, {config.model.architecture} {config.model.backbone}, '
        f'{config.model.num_classes} classes')
  print(f'padded to 2049x2049:                {before / 1e9:9.1f} GFLOPs')
  print(f'resized to {resized[0]}x{resized[1]} in {frame[0]}x{frame[1]}:   '
        f'{after / 1e9:9.1f} GFLOPs  ({before / after:.1f}x fewer)')


if __name__ == '__main__':
  app.run(main)
