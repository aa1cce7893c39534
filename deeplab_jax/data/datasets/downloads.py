"""Archives from the manual dir or the network; downloads fail fast, where TFDS's downloader
would retry for minutes with no network."""

from collections.abc import Collection
import socket
import urllib.parse

from etils import epath
import tensorflow_datasets as tfds


def check_reachable(url: str, timeout: float = 10.0) -> None:
  """Raises ConnectionError unless a TCP connection to `url`'s host opens within `timeout`."""
  parsed = urllib.parse.urlparse(url)
  port = parsed.port or (443 if parsed.scheme == 'https' else 80)
  try:
    socket.create_connection((parsed.hostname, port), timeout=timeout).close()
  except OSError as error:
    raise ConnectionError(f'cannot reach {parsed.hostname} to download {url} ({error})') from None


def extract_or_download(dl_manager: tfds.download.DownloadManager, urls: dict[str, str],
                        manual_only: Collection[str] = ()) -> dict[str, epath.Path]:
  """Archive name -> extracted folder: from the manual dir when the archive is there, else
  downloaded from its URL. An archive that is neither is an error naming file, URL and dir,
  raised before anything is extracted; `manual_only` archives (behind a login) are never
  downloaded."""
  # TFDS's public `manual_dir` raises while the folder is missing or empty; we want its path.
  manual_dir = dl_manager._manual_dir  # pylint: disable=protected-access
  in_manual_dir = {name: manual_dir / name for name in urls if (manual_dir / name).exists()}
  missing = {name: url for name, url in urls.items() if name not in in_manual_dir}
  for name in missing.keys() & set(manual_only):
    raise FileNotFoundError(f'{name} not in the manual dir {manual_dir}. It cannot be downloaded '
                            f'here: sign in at {urls[name]}, download it and put it in '
                            f'{manual_dir}.')

  def not_downloaded(error: Exception) -> FileNotFoundError:
    return FileNotFoundError(
        f'{", ".join(missing)} not in the manual dir {manual_dir} and could not be '
        f'downloaded ({error}). Download {" and ".join(missing.values())} and put the '
        f'file(s) in {manual_dir}.')

  try:
    for url in missing.values():
      check_reachable(url)
  except ConnectionError as error:
    raise not_downloaded(error) from error
  extracted = dl_manager.extract(in_manual_dir)
  try:
    for name, url in missing.items():
      extracted[name] = dl_manager.download_and_extract(url)
  except Exception as error:  # pylint: disable=broad-except
    raise not_downloaded(error) from error
  return extracted
