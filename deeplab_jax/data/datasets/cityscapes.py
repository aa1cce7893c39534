"""Cityscapes through TFDS's own `cityscapes/semantic_segmentation` builder (manual download).

Its labels are the 34 `labelIds` of cityscapesScripts; training and evaluation use the 19
`trainId` classes, everything else is ignored.
"""

import numpy as np

CLASS_NAMES = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
    'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train',
    'motorcycle', 'bicycle')

# labelId -> trainId, from cityscapesScripts' labels.py; every other id is ignored.
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
             25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
# trainId -> labelId: what the Cityscapes test server takes back.
LABEL_IDS = np.array(sorted(TRAIN_IDS, key=TRAIN_IDS.get), np.uint8)

PALETTE = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32)], np.uint8)

HOW_TO_GET = (
    'Cityscapes needs a (free) registration at https://www.cityscapes-dataset.com/downloads/: '
    'download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip and put both, as they '
    'are, in the manual directory (--config.manual_dir, default <data_dir>/downloads/manual).')
