"""Downloads that fail fast: with no network, TFDS's downloader retries for minutes."""

import socket
import urllib.parse

import tensorflow_datasets as tfds


def check_reachable(url: str, timeout: float = 10.0) -> None:
  """Raises ConnectionError unless a TCP connection to `url`'s host opens within `timeout`."""
  parsed = urllib.parse.urlparse(url)
  port = parsed.port or (443 if parsed.scheme == 'https' else 80)
  try:
    socket.create_connection((parsed.hostname, port), timeout=timeout).close()
  except OSError as error:
    raise ConnectionError(f'cannot reach {parsed.hostname} to download {url} ({error})') from None


def download_and_extract(dl_manager: tfds.download.DownloadManager, urls):
  """`dl_manager.download_and_extract(urls)` (a URL or a dict of them), hosts checked first."""
  for url in (urls.values() if isinstance(urls, dict) else [urls]):
    check_reachable(url)
  return dl_manager.download_and_extract(urls)
