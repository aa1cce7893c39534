"""DeepLab v3 on PASCAL VOC 2012 with MobileNetV3-Large: torchvision's deeplabv3_mobilenet_v3_large.

The model is torchvision's (what `python -m deeplab_jax.convert torchvision --arch
deeplabv3_mobilenet_v3_large` rebuilds): MobileNetV3-Large at output stride 16, its last stage
atrous at rate 2; ASPP with rates (12, 24, 36), dropout 0.5, a 3x3 conv before the classifier;
the auxiliary FCN head on the first stride-8 unit; half-pixel bilinear resizing. torchvision
reports 60.3 mIoU (91.2 pixel accuracy) for its COCO_WITH_VOC_LABELS_V1 weights, on COCO val2017
restricted to the 20 VOC classes (`DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1
.meta['_metrics']`), not on VOC val. `--config.model.architecture=lraspp` gives its
lraspp_mobilenet_v3_large instead (57.9 mIoU there).

Weight decay 1e-6, lr 0.01 poly and the auxiliary loss at weight 0.5 are torchvision's reference
recipe (references/segmentation, trained on COCO at batch 32 for 30 epochs); the data, crop 513,
batch 16 and 30k steps are the VOC recipe's. Start from torchvision's ImageNet MobileNetV3-Large
(`--arch mobilenet_v3_large`), or fine-tune its COCO weights (`--arch
deeplabv3_mobilenet_v3_large`), with --config.init_from=DIR.
"""

from deeplab_jax import defaults


def get_config():
  # The defaults are VOC 2012's data: train_aug -> validation, crop 513, scale 0.5-2.0, flip.
  config = defaults.get_config()

  model = config.model
  model.architecture = 'deeplabv3'
  model.backbone = 'mobilenetv3_large'
  model.num_classes = 21
  model.output_stride = 16
  model.atrous_rates = (12, 24, 36)
  model.dropout_rate = 0.5
  model.head_features = 256
  model.aux_head_features = 10  # torchvision's FCNHead: a quarter of unit4's 40 channels.
  model.align_corners = False

  config.batch_size = 16
  config.num_train_steps = 30_000
  config.learning_rate = 0.01
  config.lr_power = 0.9
  config.momentum = 0.9
  config.weight_decay = 1e-6
  config.aux_loss_weight = 0.5
  config.init_from = None  # A converted MobileNetV3-Large, e.g. /tmp/mobilenet_v3_large_imagenet.
  return config
