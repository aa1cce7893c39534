"""How much of each class a head at a given stride can draw: per-class IoU of label maps coarsened
to a stride-s grid and bilinearly upsampled back, as DeepLab upsamples its logits.

  python benchmarks/label_resolution.py --labels=/path/to/camvid/val/labels --num_classes=11 \
      --ignore_value=11 --strides=4,8,16

Each grid point scores a class by its share of the s x s window around the point; the scores
are upsampled (align_corners, in the least k * s + 1 frame) and the argmax compared with the
labels. Thin classes vanish first: this is the resolution a model's output stride leaves them.
"""

import pathlib

from absl import app
from absl import flags
import numpy as np
from PIL import Image
from scipy import ndimage

from deeplab_jax import metrics
from deeplab_jax.inference import frame_size
from deeplab_jax.models.layers import interpolation_matrix

flags.DEFINE_string('labels', None, 'A folder of single-channel label PNGs.')
flags.DEFINE_integer('num_classes', None, 'Label values 0 .. num_classes - 1 are classes.')
flags.DEFINE_integer('ignore_value', 255, 'The label value of unlabelled pixels.')
flags.DEFINE_list('strides', ['4', '8', '16'], 'Grid strides to measure.')
flags.mark_flags_as_required(['labels', 'num_classes'])
FLAGS = flags.FLAGS


def coarsened(label: np.ndarray, stride: int, num_classes: int) -> np.ndarray:
  """The class drawn at each pixel from class shares on a stride grid, bilinearly upsampled."""
  frame = [frame_size(side, stride) for side in label.shape]
  one_hot = (label[..., None] == np.arange(num_classes)).astype(np.float32)
  one_hot = np.pad(one_hot, [(0, frame[0] - label.shape[0]), (0, frame[1] - label.shape[1]),
                             (0, 0)])
  shares = ndimage.uniform_filter(one_hot, size=(stride, stride, 1), mode='constant')
  grid = shares[::stride, ::stride]
  rows = interpolation_matrix(grid.shape[0], frame[0], True)
  cols = interpolation_matrix(grid.shape[1], frame[1], True)
  scores = np.einsum('xw,ywc->yxc', cols, np.einsum('yh,hwc->ywc', rows, grid))
  return scores[:label.shape[0], :label.shape[1]].argmax(-1)


def main(_):
  files = sorted(pathlib.Path(FLAGS.labels).glob('*.png'))
  if not files:
    raise SystemExit(f'No .png label files in {FLAGS.labels}')
  labels = [np.asarray(Image.open(path)) for path in files]
  print(f'{len(files)} label maps from {FLAGS.labels}')
  for stride in map(int, FLAGS.strides):
    confusion = sum(
        metrics.confusion_matrix(label, coarsened(label, stride, FLAGS.num_classes),
                                 FLAGS.num_classes, FLAGS.ignore_value) for label in labels)
    iou, mean_iou = metrics.iou_from_confusion(confusion)
    print(f'stride {stride:2d}: mIoU {mean_iou:.3f}  per class ' +
          ' '.join(f'{value:.3f}' for value in iou))


if __name__ == '__main__':
  app.run(main)
