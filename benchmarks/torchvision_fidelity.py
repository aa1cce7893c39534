"""How closely converted torchvision models match torchvision's outputs, and their speed here.

  python benchmarks/torchvision_fidelity.py --height=257 --width=385

Random weights with random BatchNorm statistics (or a .pth with --input and one --arch); prints,
per architecture, max |difference| relative to max |logit|, argmax agreement, parameter counts,
and the seconds per image of torchvision (eager) and of our model under jax.jit.
"""

import time

from absl import app
from absl import flags
import jax
import numpy as np
import torch
import torchvision

from deeplab_jax.convert import __main__ as convert_main
from deeplab_jax.convert import torchvision as tv_convert
from deeplab_jax.models.cost import count_params
from deeplab_jax.models.normalization import IMAGENET

FLAGS = flags.FLAGS
flags.DEFINE_list('arch', [*tv_convert.RESNETS, *tv_convert.DEEPLABV3],
                  'Architectures to compare.')
flags.DEFINE_string('input', None, 'A .pth state dict to use instead of random weights.')
flags.DEFINE_integer('height', 257, 'Image height.')
flags.DEFINE_integer('width', 385, 'Image width.')
flags.DEFINE_integer('batch_size', 1, 'Images per call.')


def torchvision_model(arch: str, num_classes: int, aux_loss: bool) -> torch.nn.Module:
  if arch.startswith('resnet'):
    return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
  return getattr(torchvision.models.segmentation, arch)(
      weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux_loss)


def random_state_dict(arch: str) -> dict[str, torch.Tensor]:
  """Random weights, with random BatchNorm statistics so that eval mode is not the identity."""
  torch.manual_seed(0)
  model = torchvision_model(arch, 1000 if arch.startswith('resnet') else 21, aux_loss=True)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.normal_(0, 0.2)
        module.running_var.uniform_(0.5, 2.0)
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0, 0.2)
  return model.state_dict()


def seconds_per_call(fn, *args) -> float:
  fn(*args)
  start = time.perf_counter()
  for _ in range(3):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / 3


def main(argv):
  del argv
  if FLAGS.input and len(FLAGS.arch) != 1:
    raise app.UsageError('--input needs exactly one --arch')
  for arch in FLAGS.arch:
    if FLAGS.input:
      state_dict = convert_main.load_torch_state_dict(FLAGS.input)
    else:
      state_dict = random_state_dict(arch)
    model, variables = tv_convert.convert(state_dict, arch)
    is_resnet = arch in tv_convert.RESNETS
    num_classes = (variables['params']['backbone']['logits']['bias'].shape[0] if is_resnet
                   else model.num_classes)
    reference = torchvision_model(arch, num_classes,
                                  not is_resnet and bool(model.aux_head_features))
    reference.load_state_dict(state_dict)
    reference.eval()

    # Raw pixels for ours, which normalises them; torchvision's models take them normalised.
    pixels = torch.randint(0, 256, (FLAGS.batch_size, 3, FLAGS.height, FLAGS.width)).float()
    mean, std = (torch.tensor(v).reshape(1, 3, 1, 1) for v in (IMAGENET.mean_rgb,
                                                               IMAGENET.std_rgb))
    images = (pixels - mean) / std
    with torch.no_grad():
      expected = reference(images)
    expected = expected.numpy() if is_resnet else expected['out'].numpy().transpose(0, 2, 3, 1)
    pick = (lambda out: out['logits']) if is_resnet else (lambda out: out)
    infer = jax.jit(lambda v, x: pick(model.apply(v, x, train=False)))
    nhwc = pixels.numpy().transpose(0, 2, 3, 1)
    ours = np.asarray(infer(variables, nhwc))

    error = np.abs(ours - expected).max() / np.abs(expected).max()
    agreement = np.mean(ours.argmax(-1) == expected.argmax(-1))
    with torch.no_grad():
      torch_seconds = seconds_per_call(reference, images) / FLAGS.batch_size
    jax_seconds = seconds_per_call(infer, variables, nhwc) / FLAGS.batch_size
    ours_count = count_params(variables['params'])
    torch_count = sum(p.numel() for p in reference.parameters())
    print(f'{arch:>20}: max|diff|/max|logit| {error:.2e}, argmax agreement {agreement:.4%}, '
          f'params {ours_count:,} (torchvision {torch_count:,}); s/image: torchvision '
          f'{torch_seconds:.3f}, ours {jax_seconds:.3f} ({FLAGS.height}x{FLAGS.width})')


if __name__ == '__main__':
  app.run(main)
