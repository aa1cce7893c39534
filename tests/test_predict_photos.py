"""`predict` on photos as people have them: EXIF-turned phone JPEGs, greyscale, alpha, palette,
16-bit and CMYK files, 1 x 1 to 6000 x 4000 pixels, and files that are no image or cut short.
Every case is a real file written here; expectations are computed with numpy, not with PIL's
conversions."""

import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from deeplab_jax import inference
from deeplab_jax import predict
from deeplab_jax.data import datasets

ORIENTATION = 0x0112
# What a viewer shows for each EXIF orientation of stored pixels `a`, from the EXIF standard.
UPRIGHT = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1],
           4: lambda a: a[::-1], 5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: np.rot90(a, -1)[::-1], 8: lambda a: np.rot90(a, 1)}


def random_image(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def with_orientation(orientation):
  exif = Image.Exif()
  exif[ORIENTATION] = orientation
  return exif


def halves_jpeg(path, orientation):
  """A 24 x 32 JPEG, red left half and blue right half, with an EXIF orientation; its pixels
  as stored, decoded."""
  stored = np.zeros((24, 32, 3), np.uint8)
  stored[:, :16, 0] = stored[:, 16:, 2] = 255
  Image.fromarray(stored).save(path, quality=95, exif=with_orientation(orientation))
  with Image.open(path) as file:
    return np.asarray(file.convert('RGB'))  # PIL itself never turns an image.


@pytest.mark.parametrize('orientation', range(1, 9))
def test_every_exif_orientation_is_turned_upright(tmp_path, orientation):
  stored = random_image((5, 7, 3))
  Image.fromarray(stored).save(tmp_path / 'a.png', exif=with_orientation(orientation))
  np.testing.assert_array_equal(predict.read_image(str(tmp_path / 'a.png')),
                                UPRIGHT[orientation](stored))


def test_a_phone_jpeg_is_read_as_viewers_show_it(tmp_path):
  # Orientation 6: the camera was held turned; viewers turn the stored pixels 90° clockwise,
  # so the stored left half (red) is the top half on screen.
  stored = halves_jpeg(tmp_path / 'phone.jpg', 6)
  upright = predict.read_image(str(tmp_path / 'phone.jpg'))
  assert upright.shape == (32, 24, 3)
  np.testing.assert_array_equal(upright, np.rot90(stored, -1))
  assert (upright[:14, :, 0] > 200).all() and (upright[:14, :, 2] < 50).all()
  assert (upright[18:, :, 2] > 200).all() and (upright[18:, :, 0] < 50).all()


def test_greyscale_png(tmp_path):
  grey = random_image((6, 9))
  Image.fromarray(grey, mode='L').save(tmp_path / 'grey.png')
  np.testing.assert_array_equal(predict.read_image(str(tmp_path / 'grey.png')),
                                np.stack([grey] * 3, axis=-1))


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
  values = np.array([[0, 128, 129, 257 * 100, 40000, 65535]], np.uint16)
  Image.fromarray(values).save(tmp_path / 'deep.png')  # A 16-bit greyscale PNG.
  with Image.open(tmp_path / 'deep.png') as file:
    assert file.mode == 'I;16'
  want = np.rint(values / 257).astype(np.uint8)  # 0..65535 onto 0..255.
  np.testing.assert_array_equal(want, [[0, 0, 1, 100, 156, 255]])
  np.testing.assert_array_equal(predict.read_image(str(tmp_path / 'deep.png')),
                                np.stack([want] * 3, axis=-1))


def test_rgba_png_is_composited_over_white(tmp_path):
  rgba = random_image((6, 8, 4))
  rgba[0, :, 3], rgba[1, :, 3] = 0, 255  # Fully transparent and fully opaque rows.
  Image.fromarray(rgba, mode='RGBA').save(tmp_path / 'alpha.png')
  alpha = rgba[..., 3:] / 255
  want = np.rint(rgba[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
  read = predict.read_image(str(tmp_path / 'alpha.png'))
  np.testing.assert_array_equal(read, want)
  assert (read[0] == 255).all()
  np.testing.assert_array_equal(read[1], rgba[1, :, :3])


@pytest.mark.parametrize('transparent', [False, True])
def test_palette_png(tmp_path, transparent):
  palette = random_image((4, 3), seed=1)
  indices = np.random.default_rng(2).integers(0, 4, (7, 5), dtype=np.uint8)
  image = Image.fromarray(indices, mode='P')
  image.putpalette(palette.reshape(-1).tolist())
  image.save(tmp_path / 'palette.png', **({'transparency': 3} if transparent else {}))
  want = palette[indices]
  if transparent:
    want[indices == 3] = 255  # The transparent colour shows the white page.
  np.testing.assert_array_equal(predict.read_image(str(tmp_path / 'palette.png')), want)


def test_cmyk_jpeg_has_its_colours(tmp_path):
  # 8 x 8 blocks of flat colour: JPEG keeps them within a few levels.
  cmyk = np.zeros((8, 32, 4), np.uint8)
  cmyk[:, :8] = (255, 0, 0, 0)  # Cyan.
  cmyk[:, 8:16] = (0, 0, 0, 0)  # Paper white.
  cmyk[:, 16:24] = (0, 0, 0, 255)  # Black.
  cmyk[:, 24:] = (0, 200, 100, 50)
  Image.fromarray(cmyk, mode='CMYK').save(tmp_path / 'print.jpg', quality=100)
  ink = cmyk.astype(np.float64) / 255
  want = 255 * (1 - ink[..., :3]) * (1 - ink[..., 3:])  # The naive CMYK to RGB.
  read = predict.read_image(str(tmp_path / 'print.jpg'))
  assert read.dtype == np.uint8 and read.shape == (8, 32, 3)
  np.testing.assert_allclose(read, want, atol=4)


def test_not_an_image_and_truncated_files_are_named(tmp_path):
  (tmp_path / 'notes.jpg').write_text('shopping list: eggs, milk')
  with pytest.raises(predict.UnreadableImageError, match=r'notes\.jpg: not an image'):
    predict.read_image(str(tmp_path / 'notes.jpg'))
  Image.fromarray(random_image((64, 64, 3))).save(tmp_path / 'cut.jpg')
  (tmp_path / 'cut.jpg').write_bytes((tmp_path / 'cut.jpg').read_bytes()[:600])
  with pytest.raises(predict.UnreadableImageError, match=r'cut\.jpg: .*[Tt]runcated'):
    predict.read_image(str(tmp_path / 'cut.jpg'))


def test_an_image_over_pils_limit_is_refused_naming_it(tmp_path, monkeypatch):
  Image.fromarray(random_image((60, 40, 3))).save(tmp_path / 'huge.png')
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1000)  # 2400 pixels is over twice the limit.
  with pytest.raises(predict.UnreadableImageError, match=r'huge\.png: .*exceeds limit of 2000'):
    predict.read_image(str(tmp_path / 'huge.png'))


@pytest.mark.parametrize('height, width, max_pixels, want', [
    (4000, 6000, 600, (20, 30)), (4000, 6000, 24_000_000, (4000, 6000)),
    (3024, 4032, 2048 * 2048, (1773, 2364)), (1, 10**8, 10**6, (1, 10**6)),
    (10**8, 1, 10**6, (10**6, 1))])
def test_reduced_size_keeps_the_aspect_within_max_pixels(height, width, max_pixels, want):
  assert predict.reduced_size(height, width, max_pixels) == want
  assert want[0] * want[1] <= max_pixels


def write_every_case(inputs):
  """One file of every case in `inputs`; returns the 40 x 60 image the 6000 x 4000 one (in
  100 x 100 blocks, which area averaging turns back into it) is blown up from."""
  halves_jpeg(inputs / 'phone.jpg', 6)
  Image.fromarray(random_image((12, 20)), mode='L').save(inputs / 'grey.png')
  Image.fromarray(random_image((12, 20, 4)), mode='RGBA').save(inputs / 'alpha.png')
  Image.fromarray(random_image((12, 20)).astype(np.uint16) * 257).save(inputs / 'deep.png')
  Image.fromarray(random_image((16, 16, 4)), mode='CMYK').save(inputs / 'print.jpg')
  Image.fromarray(random_image((1, 1, 3))).save(inputs / 'dot.png')
  Image.fromarray(random_image((7, 300, 3))).save(inputs / 'strip.png')
  small = random_image((40, 60, 3), seed=3)
  large = np.repeat(np.repeat(small, 100, axis=0), 100, axis=1)
  Image.fromarray(large).save(inputs / 'large.png', compress_level=1)
  (inputs / 'notes.jpg').write_text('not an image')
  Image.fromarray(random_image((64, 64, 3))).save(inputs / 'cut.jpg')
  (inputs / 'cut.jpg').write_bytes((inputs / 'cut.jpg').read_bytes()[:600])
  return small


MAX_PIXELS = 2400  # 6000 x 4000 is segmented at 60 x 40; every other case fits.


@pytest.fixture(scope='module')
def predicted(tiny_checkpoint, tmp_path_factory):
  """(inputs, output, the files that failed, the large image's 40 x 60 source): the tiny
  model's `predict_files` on a folder of every case."""
  config, workdir = tiny_checkpoint
  inputs, output = tmp_path_factory.mktemp('photos'), tmp_path_factory.mktemp('masks')
  small = write_every_case(inputs)
  failed = predict.predict_files(config, workdir, predict.input_files(str(inputs)), str(output),
                                 max_pixels=MAX_PIXELS)
  return inputs, output, failed, small


def mask(output, stem):
  """The label PNG of `stem`, checked to have its overlay's size."""
  with Image.open(output / f'{stem}.png') as file, \
      Image.open(output / f'{stem}_overlay.jpg') as overlay:
    assert overlay.size == file.size
    return np.asarray(file)


def test_the_model_segments_every_case_and_names_the_unreadable(predicted):
  inputs, output, failed, _ = predicted
  assert failed == [str(inputs / 'cut.jpg'), str(inputs / 'notes.jpg')]
  assert sorted(path.stem for path in output.glob('*.png')) == [
      'alpha', 'deep', 'dot', 'grey', 'large', 'phone', 'print', 'strip']
  for stem, size in (('alpha', (12, 20)), ('deep', (12, 20)), ('grey', (12, 20)),
                     ('print', (16, 16)), ('dot', (1, 1)), ('strip', (7, 300)),
                     ('phone', (32, 24)), ('large', (4000, 6000))):
    labels = mask(output, stem)
    assert labels.shape == size and labels.max() < 4, stem


def test_the_phone_photos_overlay_is_upright(predicted):
  inputs, output, _, _ = predicted
  with Image.open(inputs / 'phone.jpg') as file:
    upright = np.rot90(np.asarray(file.convert('RGB')), -1).astype(np.int16)
  colours = datasets.get('shapes').palette[mask(output, 'phone')]
  with Image.open(output / 'phone_overlay.jpg') as overlay:
    error = np.abs(np.asarray(overlay, np.int16) - (upright + colours) // 2)
  assert error.mean() < 3  # JPEG's, largest where red meets blue.


def red_rule(variables, images, sizes):
  """A stand-in for the model whose labels show the pixels: 1 where red beats blue by 64."""
  del variables, sizes
  red = images[..., 0].astype(jnp.int32) - images[..., 2].astype(jnp.int32) > 64
  return red.astype(jnp.int32), None


@pytest.fixture(scope='module')
def rule_masks(tiny_checkpoint, predicted, tmp_path_factory):
  """The output folder of `predict_files` on the phone photo and the large image, with
  `red_rule` standing in for the tiny model (whose masks are all one class)."""
  config, workdir = tiny_checkpoint
  inputs, output = predicted[0], tmp_path_factory.mktemp('rule_masks')
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(inference, 'make_predict_fn', lambda model, config: red_rule)
    assert predict.predict_files(config, workdir, [str(inputs / 'phone.jpg'),
                                                   str(inputs / 'large.png')],
                                 str(output), max_pixels=MAX_PIXELS) == []
  return output


def test_the_phone_photos_mask_is_upright(rule_masks):
  # The stored left half is red: upright, it is the top half.
  want = np.zeros((32, 24), np.uint8)
  want[:16] = 1
  np.testing.assert_array_equal(mask(rule_masks, 'phone'), want)


def test_a_large_image_is_segmented_shrunk_and_its_labels_resized_back(predicted, rule_masks):
  small = predicted[3].astype(np.int32)
  small_labels = small[..., 0] - small[..., 2] > 64
  assert 0.1 < small_labels.mean() < 0.9
  want = np.repeat(np.repeat(small_labels, 100, axis=0), 100, axis=1)
  np.testing.assert_array_equal(mask(rule_masks, 'large'), want)
