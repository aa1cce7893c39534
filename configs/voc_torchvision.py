"""torchvision's DeepLabV3 ResNet-101 (weights COCO_WITH_VOC_LABELS_V1), converted, on VOC 2012 val.

  python -m deeplab_jax.convert torchvision --arch deeplabv3_resnet101 \
      --input deeplabv3_resnet101.pth --output /tmp/tv_deeplabv3_resnet101
  python -m deeplab_jax.main --config=configs/voc_torchvision.py --workdir=/tmp/tv_voc_eval \
      --mode=eval --config.init_from=/tmp/tv_deeplabv3_resnet101

The model is torchvision's architecture (output stride 8, ASPP rates 12/24/36, its 3x3 head
conv, half-pixel resizing; `convert.torchvision.model_config`). Evaluation follows torchvision's
reference scripts (references/segmentation, SegmentationPresetEval): the shorter side resized to
520, the probabilities resized back and scored at each image's size. torchvision reports 67.4
mIoU and 92.4% pixel accuracy for these weights on its subset of COCO val2017 with the 20 VOC
classes, not on VOC val. Only the VOC archive is needed: VOC val, and VOC train for fine-tuning.
"""

from deeplab_jax import defaults
from deeplab_jax.convert import torchvision


def get_config():
  config = defaults.get_config()
  config.dataset = 'voc2012'
  config.train_split, config.eval_split = 'train', 'validation'
  config.model = torchvision.model_config('deeplabv3_resnet101', num_classes=21)
  config.eval.resize, config.eval.resize_size = 'short_side', (520,)
  config.eval_crop_size = None  # The least k * 8 + 1 holding every resized image.
  config.eval_batch_size = 8
  config.init_from = None  # The converted weights: --config.init_from=DIR.
  return config
