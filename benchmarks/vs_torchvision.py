"""Side by side with torchvision on this machine: the same DeepLabV3 ResNet-50, trained and run.

  python benchmarks/vs_torchvision.py
  python benchmarks/vs_torchvision.py --repetitions=2 --steps=5 --warmup=2 --jax_devices=1,2 \
      --works=train_b2_321,infer_b1_513,infer_b4_257

torchvision's `deeplabv3_resnet50` (random weights, no auxiliary head, 21 classes; eager, in
train mode with SGD + momentum + weight decay and the ignore-aware cross-entropy) against ours
built from `convert.torchvision.model_config('deeplabv3_resnet50', 21)` (jitted `train_step` of
`deeplab_jax.train_state`; inference is `model.apply` under jit). Each measurement runs in a
process of its own, so that its peak host memory is its own; the sides are interleaved, and the
whole round repeated `--repetitions` times. A measurement is the median of `--steps` steps after
`--warmup` (which include JAX's compilation). Prints each one, then the table with the speed
ratio torchvision seconds / ours (above 1: we are faster) and the peak memory. The JAX processes
never import TensorFlow.
"""

import json
import resource
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_list('works', ['train_b2_321', 'infer_b1_513', 'infer_b4_257'],
                  'What to measure: train or infer, batch size, image size.')
flags.DEFINE_list('jax_devices', ['1', '2'], 'JAX CPU device counts to measure (each that '
                  'divides the batch).')
flags.DEFINE_integer('repetitions', 2, 'Rounds over all measurements.')
flags.DEFINE_integer('steps', 5, 'Timed steps of each measurement.')
flags.DEFINE_integer('warmup', 2, 'Untimed steps before them.')
flags.DEFINE_enum('side', None, ['torch', 'jax'], 'Internal: run one measurement of this side.')
flags.DEFINE_string('work', None, 'Internal: the measurement.')
flags.DEFINE_integer('devices', 1, 'Internal: JAX CPU devices.')
flags.DEFINE_string('torch_model', 'deeplabv3_resnet50', 'With --side=torch: the torchvision '
                    'segmentation model.')
flags.DEFINE_string('torch_device', 'cpu', 'With --side=torch: where it runs (cuda on a GPU).')
flags.DEFINE_bool('amp', False, 'With --side=torch: automatic mixed precision (bfloat16).')

NUM_CLASSES = 21


def parse_work(work: str) -> tuple[str, int, int]:
  kind, batch, size = work.split('_')
  return kind, int(batch.removeprefix('b')), int(size)


def timed(step, steps: int, warmup: int) -> list[float]:
  for _ in range(warmup):
    step()
  seconds = []
  for _ in range(steps):
    start = time.perf_counter()
    step()
    seconds.append(time.perf_counter() - start)
  return seconds


def torch_step(kind: str, batch: int, size: int, name: str = 'deeplabv3_resnet50',
               device: str = 'cpu', amp: bool = False):
  """A function running one train step or one inference of torchvision's model `name`, with
  `amp` under bfloat16 autocast."""
  import contextlib  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import torchvision  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  model = getattr(torchvision.models.segmentation, name)(
      weights=None, weights_backbone=None, num_classes=NUM_CLASSES, aux_loss=False).to(device)
  images = torch.randn(batch, 3, size, size, device=device)
  autocast = (lambda: torch.autocast(device, torch.bfloat16)) if amp else contextlib.nullcontext
  if kind == 'infer':
    model.eval()

    def infer():
      with torch.inference_mode(), autocast():
        model(images)['out'].sum().item()

    return infer
  labels = torch.randint(0, NUM_CLASSES, (batch, size, size), device=device)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.007, momentum=0.9, weight_decay=1e-4)
  loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
  model.train()

  def train():
    optimizer.zero_grad()
    with autocast():
      loss = loss_fn(model(images)['out'].float(), labels)
    loss.backward()
    optimizer.step()
    loss.item()

  return train


def jax_step(kind: str, batch: int, size: int, devices: int):
  """A function running one jitted train step or one inference of our model."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_num_cpu_devices', devices)
  import numpy as np  # pylint: disable=g-import-not-at-top
  from deeplab_jax import defaults  # pylint: disable=g-import-not-at-top
  from deeplab_jax import sharding  # pylint: disable=g-import-not-at-top
  from deeplab_jax import train_state  # pylint: disable=g-import-not-at-top
  from deeplab_jax.convert import torchvision as tv_convert  # pylint: disable=g-import-not-at-top
  from deeplab_jax.models import create_model  # pylint: disable=g-import-not-at-top

  config = defaults.get_config()
  config.model = tv_convert.model_config('deeplabv3_resnet50', NUM_CLASSES)
  config.crop_size, config.batch_size = (size, size), batch
  mesh = sharding.create_mesh()
  model = create_model(config.model)
  state = train_state.create_train_state(config, model, mesh, seed=0)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
  if kind == 'infer':
    infer = jax.jit(lambda variables, x: model.apply(variables, x, train=False),
                    in_shardings=(sharding.replicated(mesh), sharding.batch_sharding(mesh)))
    variables, images = state.variables, sharding.shard_batch({'image': images}, mesh)['image']
    return lambda: infer(variables, images).block_until_ready()
  batch_arrays = sharding.shard_batch(
      {'image': images,
       'label': rng.integers(0, NUM_CLASSES, (batch, size, size), dtype=np.int32)}, mesh)
  step = train_state.jit_train_step(train_state.make_train_step(config, model), mesh)
  holder = [state]

  def train():
    holder[0], metrics = step(holder[0], batch_arrays)
    metrics['loss'].block_until_ready()

  return train


def measure(side: str, work: str, devices: int) -> None:
  """Runs one measurement in this process and prints it as a RESULT line."""
  kind, batch, size = parse_work(work)
  if side == 'torch':
    step = torch_step(kind, batch, size, FLAGS.torch_model, FLAGS.torch_device, FLAGS.amp)
  else:
    step = jax_step(kind, batch, size, devices)
  seconds = timed(step, FLAGS.steps, FLAGS.warmup)
  peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  print('RESULT ' + json.dumps({
      'side': side, 'work': work, 'devices': devices, 'median': statistics.median(seconds),
      'seconds': seconds, 'images_per_second': batch / statistics.median(seconds),
      'peak_gb': peak_gb, 'tensorflow': 'tensorflow' in sys.modules}))


def run_child(side: str, work: str, devices: int) -> dict:
  command = [sys.executable, __file__, f'--side={side}', f'--work={work}',
             f'--devices={devices}', f'--steps={FLAGS.steps}', f'--warmup={FLAGS.warmup}']
  result = subprocess.run(command, capture_output=True, text=True, check=False)
  lines = [line for line in result.stdout.splitlines() if line.startswith('RESULT ')]
  if result.returncode or not lines:
    raise RuntimeError(f'{" ".join(command)} failed:\n{result.stderr[-3000:]}')
  return json.loads(lines[0].removeprefix('RESULT '))


def main(argv):
  del argv
  if FLAGS.side:
    measure(FLAGS.side, FLAGS.work, FLAGS.devices)
    return
  results = []
  for repetition in range(FLAGS.repetitions):
    for work in FLAGS.works:
      _, batch, _ = parse_work(work)
      sides = [('torch', 1)] + [('jax', int(n)) for n in FLAGS.jax_devices
                                if batch % int(n) == 0]
      for side, devices in sides:
        result = run_child(side, work, devices)
        assert not (side == 'jax' and result['tensorflow']), 'the JAX side imported TensorFlow'
        results.append(result)
        print(f'[{repetition + 1}] {work:>13} {side:>5} x{devices}: median '
              f'{result["median"]:.3f} s, peak {result["peak_gb"]:.2f} GB', flush=True)

  def span(values, unit, digits):
    low, high = min(values), max(values)
    return f'{low:.{digits}f}{unit}' if low == high else f'{low:.{digits}f}-{high:.{digits}f}{unit}'

  print(f'\n{"work":>13} | {"torchvision":>13} | {"ours":>22} | {"speed ratio":>11} | '
        'peak GB torchvision / ours')
  for work in FLAGS.works:
    torch_runs = [r for r in results if r['work'] == work and r['side'] == 'torch']
    for devices in sorted({r['devices'] for r in results if r['side'] == 'jax'}):
      ours = [r for r in results if r['work'] == work and r['side'] == 'jax'
              and r['devices'] == devices]
      if not ours:
        continue
      ratio = statistics.median(r['median'] for r in torch_runs) / statistics.median(
          r['median'] for r in ours)
      print(f'{work:>13} | {span([r["median"] for r in torch_runs], " s", 2):>13} | '
            f'{span([r["median"] for r in ours], " s", 2) + f" ({devices} dev)":>22} | '
            f'{ratio:>10.2f}x | {span([r["peak_gb"] for r in torch_runs], "", 2)} / '
            f'{span([r["peak_gb"] for r in ours], "", 2)}')


if __name__ == '__main__':
  app.run(main)
