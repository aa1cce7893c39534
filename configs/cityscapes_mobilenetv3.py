"""LR-ASPP on Cityscapes with MobileNetV3-Large: the MobileNetV3 paper's segmentation model.

LR-ASPP (Howard et al. 2019, section 6.3): the last stage atrous (output stride 16), its 960
final channels through a 1x1 conv of 128 channels gated by their global average, class logits
from it plus class logits from the stride-8 features. It aims at the paper's Table 7
(Cityscapes val, MobileNetV3-Large with LR-ASPP, trained from scratch with its last stage at
half width, "RF2"; ours keeps the full width, as torchvision's lraspp_mobilenet_v3_large does).
TF DeepLab's released checkpoint of that model (g3doc/model_zoo.md,
mobilenetv3_large_cityscapes_trainfine) scores 72.41% on val at output stride 32, single scale,
15.95B multiply-adds on whole 1024 x 2048 images.

The data, crop 769, batch 8 and schedule are the Cityscapes recipe's (configs/cityscapes.py);
weight decay 4e-5 is the MobileNet recipes'. Start from torchvision's ImageNet MobileNetV3-Large
(`--arch mobilenet_v3_large`; the paper trained from scratch) or its COCO LR-ASPP (`--arch
lraspp_mobilenet_v3_large`, both classifiers start afresh) with --config.init_from=DIR.
"""

from deeplab_jax import defaults


def get_config():
  config = defaults.get_config()
  config.dataset = 'cityscapes'
  config.train_split = 'train'
  config.eval_split = 'validation'
  config.crop_size = (769, 769)
  config.eval_crop_size = (1025, 2049)  # Whole 1024 x 2048 images, padded to k * 16 + 1.
  config.eval_batch_size = 8
  config.min_scale, config.max_scale = 0.5, 2.0
  config.flip = True

  model = config.model
  model.architecture = 'lraspp'
  model.backbone = 'mobilenetv3_large'
  model.num_classes = 19
  model.output_stride = 16
  model.align_corners = False

  config.batch_size = 8
  config.num_train_steps = 90_000
  config.learning_rate = 0.01
  config.lr_power = 0.9
  config.momentum = 0.9
  config.weight_decay = 4e-5
  config.init_from = None  # A converted MobileNetV3-Large, e.g. /tmp/mobilenet_v3_large_imagenet.
  return config
