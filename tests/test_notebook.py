"""The Colab notebook runs from top to bottom on this CPU with its smoke setting, skipping the
Colab-only steps (installation, TensorBoard, upload) for their local stand-ins."""

import nbclient
import nbformat

from conftest import REPO

NOTEBOOK = REPO / 'notebooks' / 'deeplab_jax_colab.ipynb'


def test_the_file_stores_no_outputs():
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  for cell in notebook.cells:
    if cell.cell_type == 'code':
      assert cell.outputs == [] and cell.execution_count is None


def test_the_notebook_runs(shapes_dir, tmp_path, monkeypatch):
  monkeypatch.setenv('DEEPLAB_JAX_SMOKE', '1')
  monkeypatch.setenv('DEEPLAB_JAX_WORKDIR', str(tmp_path / 'work'))
  monkeypatch.setenv('TFDS_DATA_DIR', shapes_dir)
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(notebook, timeout=600, kernel_name='python3',
                          resources={'metadata': {'path': str(REPO)}}).execute()
  text = '\n'.join(output.get('text', '') for cell in notebook.cells
                   for output in cell.get('outputs', []))
  for skipped in ('skipped the installation', 'watch it with `tensorboard --logdir',
                  'no upload'):
    assert f'Not in Colab: {skipped}' in text
  assert 'Trained to step 4' in text
  assert 'The checkpoint of step 4 on 16 validation images' in text
  images = [output for cell in notebook.cells for output in cell.get('outputs', [])
            if 'image/png' in output.get('data', {})]
  assert len(images) == 3  # Legend, validation panels, the other image.
  assert (tmp_path / 'work' / 'checkpoints' / '4').is_dir()
