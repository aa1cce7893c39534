"""Every configuration field with its default; recipes in configs/ start here and override.

Override any field on the command line: `--config.batch_size=8 --config.model.output_stride=8`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The defaults: DeepLab v3+ on ResNet-101, the official PASCAL VOC training recipe."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  # Data: a dataset of the registry (deeplab_jax.data.datasets), read through TFDS.
  config.dataset = 'voc2012'
  # TFDS data directory; unset means TFDS's default (~/tensorflow_datasets).
  config.data_dir = ml_collections.config_dict.placeholder(str)
  # Where downloaded archives are looked for first; unset: <data_dir>/downloads/manual.
  config.manual_dir = ml_collections.config_dict.placeholder(str)
  # dataset='folder': your own images and label PNGs (see deeplab_jax/data/datasets/folder.py).
  config.folder = folder = ml_collections.ConfigDict()
  folder.root = ml_collections.config_dict.placeholder(str)
  # The classes: named, or only counted (then called class_0 .. class_{num_classes - 1}).
  folder.class_names = ()
  folder.num_classes = 0
  folder.ignore_value = 255  # The label value that marks unlabelled pixels in your PNGs.
  folder.palette = ()  # [(r, g, b), ...] per class; empty: the PASCAL palette.
  config.train_split = 'train_aug'
  config.eval_split = 'validation'
  config.crop_size = (513, 513)  # k * output_stride + 1, as in the official recipes.
  config.min_scale = 0.5  # Random scale range of training images.
  config.max_scale = 2.0
  config.flip = True  # Random horizontal flips when training.
  # Class-uniform crops: with this probability a training crop holds a pixel of one of
  # focus_crop_classes (class ids; a class drawn uniformly among those in the image).
  config.focus_crop_classes = ()
  config.focus_crop_probability = 0.0
  # The frame the model evaluates in: each image (resized by eval.resize, if set) is padded to
  # it. None: the least k * output_stride + 1 holding every image of eval_split.
  config.eval_crop_size = (513, 513)
  config.shuffle_buffer_size = 1_000

  # Model: see deeplab_jax.models.create_model.
  config.model = model = ml_collections.ConfigDict()
  # 'deeplabv1', 'deeplabv2', 'deeplabv3', 'deeplabv3plus', or 'lraspp' (MobileNetV3's head).
  model.architecture = 'deeplabv3plus'
  # resnet18/34/50/101 (with '_beta' for the three-conv stem), vgg16, vgg16_bn, xception41,
  # xception65, mobilenetv2, mobilenetv3_large or mobilenetv3_small.
  model.backbone = 'resnet101'
  model.num_classes = 21  # Must match the dataset's.
  model.output_stride = 16
  # ASPP rates (v3, v3+; double them at output stride 8), ASPP-L's (v2) or fc6's (v1, one).
  model.atrous_rates = (6, 12, 18)
  model.multi_grid = (1, 2, 4)  # Unit rates of the last ResNet stage; one per unit.
  model.keep_rate_in_first_unit = False  # True: torchvision's dilation policy.
  model.width = 1.0  # Multiplies every backbone channel count.
  model.aspp_features = 256
  model.dropout_rate = 0.1  # After the ASPP projection (v1: after fc6 and fc7).
  model.separable_conv = False  # Separable 3x3 convs in ASPP and the decoder (Xception zoo).
  model.large_fov_features = 1024  # v1: channels of fc6 and fc7.
  model.low_level_features = 48  # v3+ decoder: low-level projection and 3x3 conv widths.
  model.decoder_features = 256
  model.head_features = 0  # > 0: a 3x3 conv before the classifier (torchvision: 256).
  # > 0: torchvision's auxiliary FCN head on the backbone's auxiliary feature (ResNet: 256).
  model.aux_head_features = 0
  model.lraspp_features = 128  # LR-ASPP: channels of the gated 1x1 conv on the final features.
  model.align_corners = True  # Bilinear upsampling convention (TF DeepLab: True).
  model.bn_momentum = 0.9997
  # True: BatchNorm normalises with its running statistics in training too, and keeps them
  # (DeepLab v2). Freeze its scale and offset with learning_rate_multipliers (('/bn/', 0.0),).
  model.freeze_batch_norm = False
  model.bn_epsilon = 1e-5
  # Compute dtype: 'float32', 'bfloat16', or 'auto': bfloat16 on TPU, float32 elsewhere. Params,
  # BatchNorm statistics and the loss stay float32.
  model.dtype = 'auto'
  # The model normalises raw pixels as (pixel - mean_rgb) / std_rgb. Unset: the backbone's own
  # (ImageNet's for torchvision-trained backbones, [-1, 1] for Xception and the 'beta' ResNets).
  model.mean_rgb = ml_collections.config_dict.placeholder(tuple)
  model.std_rgb = ml_collections.config_dict.placeholder(tuple)

  # Optimisation: SGD with momentum, weight decay on conv kernels, poly learning rate.
  # 'adamw': Adam with b1 = momentum and decoupled weight decay, times the learning rate (so
  # AdamW's weight_decay is of the order of 1e-2, not SGD's 1e-4).
  config.optimizer = 'sgd'
  # Global batches, split over all devices and hosts: 16 runs on TPU slices of up to 16 chips.
  config.batch_size = 16
  config.num_train_steps = 30_000
  config.learning_rate = 0.007
  # 'poly': (1 - step / num_train_steps) ** lr_power down to end_learning_rate; 'step': times
  # lr_step_factor every lr_step_size steps (DeepLab v1's Caffe schedule).
  config.lr_schedule = 'poly'
  config.end_learning_rate = 0.0
  config.lr_power = 0.9
  config.lr_step_size = 2_000
  config.lr_step_factor = 0.1
  config.warmup_steps = 0
  config.momentum = 0.9
  config.weight_decay = 1e-4
  config.ignore_label = 255
  config.aux_loss_weight = 0.5  # Weight of the auxiliary head's loss, when the model has one.
  # Loss weight per class: None (all 1), one weight per class, or 'median_frequency': SegNet's
  # balancing, from the train split's labels (counted once, cached beside the prepared data).
  config.class_weights = ml_collections.config_dict.placeholder(object)
  config.median_frequency_power = 1.0  # Those weights to this power: 0.5 tempers them (sqrt).
  # Hard-pixel mining (see deeplab_jax/losses.py), one or the other. TF DeepLab's top-k: the
  # loss over this fraction of the labelled pixels with the largest loss, reached linearly over
  # hard_example_mining_step steps (0: at once); 1 keeps them all.
  config.top_k_percent_pixels = 1.0
  config.hard_example_mining_step = 0
  # mmsegmentation's OHEM: the pixels whose true-class probability is below ohem_threshold
  # (e.g. 0.7), at least ohem_min_kept per image. Unset: no OHEM.
  config.ohem_threshold = ml_collections.config_dict.placeholder(float)
  config.ohem_min_kept = 100_000
  # > 0: plus this times the soft Jaccard loss, 1 - soft IoU averaged over the classes present,
  # which weighs rare classes as much as common ones (see deeplab_jax/losses.py).
  config.jaccard_loss_weight = 0.0
  # (regex, multiplier) pairs: the learning rate (and weight decay) of the parameters whose path
  # ('backbone/stage1_unit1/conv1/bn/scale') the regex searches is multiplied; the first match
  # counts. 0 freezes: no update, no decay. E.g. (('classifier', 10.0),) as DeepLab v1 and v2.
  config.learning_rate_multipliers = ()
  # > 0: also keep an exponential moving average of the model variables (parameters and
  # BatchNorm statistics) with this decay, e.g. 0.999 (see train_state.ema_rate); evaluation,
  # prediction and export then use the average. 0 keeps none.
  config.ema_decay = 0.0
  # A non-finite loss or gradient stops training (nothing after the last good checkpoint is
  # saved); True skips such steps instead, leaving the state as it was, and logs how many.
  config.skip_nonfinite_steps = False
  # A directory written by `python -m deeplab_jax.convert` (or any Orbax checkpoint of model
  # variables) to start from when the workdir has no checkpoint yet. Matching parameters are
  # restored; a classifier of another class count, and whatever it lacks, keep their init.
  config.init_from = ml_collections.config_dict.placeholder(str)

  # Evaluation, logging and checkpoints.
  config.eval = ml_collections.ConfigDict()
  config.eval.scales = (1.0,)  # Multi-scale inference, e.g. (0.5, 0.75, 1.0, 1.25, 1.5, 1.75).
  config.eval.flip = False  # Also average the prediction of the mirrored image.
  config.eval.window_size = ml_collections.config_dict.placeholder(tuple)  # Sliding windows.
  config.eval.window_stride = ml_collections.config_dict.placeholder(tuple)
  # Evaluate each image resized, aspect ratio kept, and score the probabilities resized back at
  # its own size: 'long_side' or 'short_side' to resize_size[0] pixels, 'fit_within'
  # (long, short) sides, or 'fit_box' (height, width) (see deeplab_jax/inference.py,
  # resized_sizes).
  config.eval.resize = ml_collections.config_dict.placeholder(str)
  config.eval.resize_size = ml_collections.config_dict.placeholder(tuple)
  # DenseCRF post-processing (v1/v2's; see deeplab_jax/crf.py), for any model. Its parameters
  # are DeepLab v2's for VOC: kernel weights, standard deviations in pixels and colour levels.
  config.eval.crf = False
  config.eval.crf_params = ml_collections.ConfigDict(dict(
      bilateral_weight=4.0, bilateral_spatial_std=121.0, bilateral_colour_std=5.0,
      smoothness_weight=3.0, smoothness_std=3.0, iterations=10,
      vertices_per_pixel=0.5))  # The fast path's bilateral lattice room; photos use < 0.35.
  config.eval.checkpoint_step = ml_collections.config_dict.placeholder(int)  # --mode=eval.
  config.eval_batch_size = 16
  config.eval_every_steps = 2_000
  config.num_eval_images = 4  # Colour-coded predictions written to TensorBoard at each eval.
  config.log_every_steps = 50
  config.checkpoint_every_steps = 1_000
  config.max_checkpoints_to_keep = 3
  # Resume from this checkpoint step instead of the newest (e.g. when the newest is damaged);
  # the newer ones are moved to <workdir>/checkpoints_set_aside/.
  config.resume_step = ml_collections.config_dict.placeholder(int)
  return config
