"""Converts another framework's weights into variables our configs start from.

  python -m deeplab_jax.convert torchvision --arch resnet101 --input resnet101.pth \
      --output /tmp/resnet101_imagenet
  python -m deeplab_jax.main --config=configs/voc.py --workdir=... \
      --config.init_from=/tmp/resnet101_imagenet

mobilenet_v2, mobilenet_v3_large/small, vgg16 and vgg16_bn give DeepLab backbones
(configs/voc_mobilenetv2.py, configs/voc_v1_vgg16.py) without the layers DeepLab replaces; the
command lists them.
"""

import argparse
import json
import pickle
import sys

from absl import logging
from etils import epath

from deeplab_jax import checkpointing
from deeplab_jax.convert import torchvision
from deeplab_jax.models.cost import count_params


def load_torch_state_dict(path: str) -> dict:
  """A state dict from a `.pth` file: tensors only (`weights_only=True`), never pickled code."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise SystemExit("Reading .pth files needs PyTorch: pip install -e '.[torch]'") from None
  if not epath.Path(path).is_file():
    raise SystemExit(f'--input: no such file: {path}')
  with epath.Path(path).open('rb') as file:
    try:
      state = torch.load(file, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
      lines = [line for line in str(error).splitlines() if 'GLOBAL' in line]  # What it asked for.
      raise SystemExit(f'--input: {path} holds more than tensors, and it is not unpickled'
                       f'{": " + lines[0] if lines else ""}') from None
  if not isinstance(state, dict):
    raise SystemExit(f'--input: {path} holds a {type(state).__name__}, not a state dict')
  # torchvision's reference training scripts save {'model': state_dict, 'optimizer': ...}.
  return state['model'] if isinstance(state.get('model'), dict) else state


def convert_torchvision(args: argparse.Namespace) -> None:
  output = epath.Path(args.output)
  if (output / 'variables').exists():
    raise SystemExit(f'--output: {args.output} already holds converted variables; remove it or '
                     'choose another directory')
  state_dict = load_torch_state_dict(args.input)
  try:
    model, variables = torchvision.convert(state_dict, args.arch, args.num_classes)
  except ValueError as error:
    raise SystemExit(f'{args.input}: {error}') from None
  checkpointing.save_variables(args.output, variables)
  left_out = torchvision.left_out(state_dict, args.arch)
  if left_out:
    print(f'Left out {", ".join(left_out)}: {torchvision.LEFT_OUT[args.arch][1]}')
  # What the variables are, and for DeepLabV3 and LR-ASPP the config.model that reproduces
  # torchvision's.
  description = {'source': 'torchvision', 'arch': args.arch, 'input': args.input}
  if args.arch in torchvision.SEGMENTATION:
    description['model'] = torchvision.model_config(
        args.arch, model.num_classes, 'aux_head' in variables['params']).to_dict()
  (output / 'model.json').write_text(json.dumps(description, indent=2))
  count = count_params(variables['params'])
  print(f'Wrote {args.arch} ({count:,} parameters) to {args.output}; start a run from it with '
        f'--config.init_from={args.output}')


def main(argv: list[str]) -> None:
  parser = argparse.ArgumentParser(prog='python -m deeplab_jax.convert', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sources = parser.add_subparsers(dest='source', required=True)
  tv = sources.add_parser(
      'torchvision',
      help='torchvision ResNet, DeepLabV3, LR-ASPP, MobileNetV2/V3 or VGG-16 weights (.pth)')
  tv.add_argument('--arch', required=True, choices=torchvision.ARCHS)
  tv.add_argument('--input', required=True, help='the .pth file (a state_dict)')
  tv.add_argument('--output', required=True, help='directory to write the variables to')
  tv.add_argument('--num_classes', type=int, default=None,
                  help="ResNet, DeepLabV3, LR-ASPP: checked against the state dict's (default: "
                  'take it from there)')
  args = parser.parse_args(argv)
  logging.set_verbosity(logging.WARNING)
  convert_torchvision(args)


if __name__ == '__main__':
  main(sys.argv[1:])
