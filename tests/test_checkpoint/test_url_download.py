"""Pretrained weights given by URL (``init_cfg=dict(type='Pretrained', checkpoint=URL)``)
are really downloaded, into torch hub's cache, and checked before they are cached.

A local HTTP server on 127.0.0.1 serves the files, torch hub's cache is under tmp_path
(TORCH_HOME), and every socket connection to another address fails: no test reaches the
internet.
"""
import http.server
import io
import ipaddress
import os
import socket
import threading

import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader

import mmpoolformer.checkpoint.safe_load as safe_load
from mmpoolformer.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    cache_path,
    convert_state_dict,
)
from mmpoolformer.models import PoolFormer
from mmpoolformer.testing import official_imagenet_checkpoint

# The path of the configs' URL (a GitHub release asset), served by the local server.
S12 = '/sail-sg/poolformer/releases/download/v1.0/poolformer_s12.pth.tar'
TINY_ARCH = dict(layers=[1, 2, 1, 1], embed_dims=[8, 16, 24, 32], mlp_ratios=4,
                 layer_scale_init_value=1e-5)
TINY = '/weights/tiny_poolformer.pth'


class Server:
    """Serves ``files`` (URL path -> bytes) over HTTP on 127.0.0.1, on a free port.

    ``cut[path] = n`` announces the whole length but drops the connection after ``n``
    bytes, as a network failure does.
    """

    def __init__(self):
        self.files, self.cut, self.requests = {}, {}, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):

            def do_GET(self):
                server.requests.append(self.path)
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header('Content-Type', 'application/octet-stream')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data[:server.cut.get(self.path, len(data))])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f'http://127.0.0.1:{self.httpd.server_address[1]}{path}'

    def stop(self):
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.thread.join()
        self.httpd.server_close()


def _loopback_only(connect):
    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not ipaddress.ip_address(host).is_loopback:
            raise OSError(f'test tried to reach {host}: tests stay on 127.0.0.1')
        return connect(sock, address)
    return guarded


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No connection leaves this machine; no proxy stands between us and 127.0.0.1."""
    monkeypatch.setattr(socket.socket, 'connect', _loopback_only(socket.socket.connect))
    for name in ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'all_proxy',
                 'ALL_PROXY'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """torch hub's cache directory, under tmp_path through TORCH_HOME."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setattr(torch.hub, '_hub_dir', None)  # as if torch.hub.set_dir was not called
    return tmp_path / 'torch' / 'hub' / 'checkpoints'


@pytest.fixture
def server():
    server = Server()
    yield server
    server.stop()


@pytest.fixture
def logs(monkeypatch):
    messages = []
    monkeypatch.setattr(safe_load, 'print_log', lambda msg, **kw: messages.append(msg))
    return messages


def saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture(scope='module')
def s12_weights():
    """An official-layout PoolFormer-S12 ImageNet checkpoint (random weights) and its bytes."""
    state_dict = official_imagenet_checkpoint(PoolFormer.arch_settings['s12'], seed=3)
    return state_dict, saved(state_dict)


@pytest.fixture(scope='module')
def tiny_weights():
    state_dict = official_imagenet_checkpoint(TINY_ARCH, seed=4)
    return state_dict, saved(state_dict)


def build(arch, url):
    model = PoolFormer(arch, init_cfg=dict(type='Pretrained', checkpoint=url))
    model.init_weights()
    return model


def assert_loaded(model, official):
    """Every backbone weight of ``model`` is the checkpoint's (strict, exact)."""
    converted = convert_state_dict(official)[0]
    own = {k: v for k, v in model.state_dict().items() if not k.startswith('out_norms.')}
    assert set(own) <= set(converted)
    for key, value in own.items():
        assert torch.equal(value, converted[key]), key


def cached_files(hub):
    """Everything in the cache directory, temporary and hidden files included."""
    return sorted(os.listdir(hub)) if hub.exists() else []


def test_first_build_downloads_into_the_hub_cache_the_second_reads_it(server, hub,
                                                                       s12_weights):
    state_dict, data = s12_weights
    server.files[S12] = data
    url = server.url(S12)
    assert cache_path(url) == str(hub / 'poolformer_s12.pth.tar')

    assert_loaded(build('s12', url), state_dict)
    assert server.requests == [S12]
    assert cached_files(hub) == ['poolformer_s12.pth.tar']
    assert (hub / 'poolformer_s12.pth.tar').read_bytes() == data

    server.stop()  # the second build must not need the network
    assert_loaded(build('s12', url), state_dict)
    assert server.requests == [S12]


FAULTS = {
    # The server's file is half of the checkpoint (a broken upload or mirror).
    'file cut in half': lambda data: dict(files=data[:len(data) // 2]),
    # The connection drops half-way; the announced length was the whole file's.
    'connection dropped': lambda data: dict(files=data, cut=len(data) // 2),
    # A page instead of the file (e.g. a login or error page served with status 200).
    'html page': lambda data: dict(files=b'<!DOCTYPE html><html>Sign in</html>\n'),
}


@pytest.mark.parametrize('fault', list(FAULTS))
def test_a_broken_download_is_one_error_and_leaves_nothing_in_the_cache(
        fault, server, hub, tiny_weights):
    state_dict, data = tiny_weights
    served = FAULTS[fault](data)
    server.files[TINY] = served['files']
    if 'cut' in served:
        server.cut[TINY] = served['cut']
    url = server.url(TINY)
    with pytest.raises(CheckpointError) as error:
        build(TINY_ARCH, url)
    message = str(error.value)
    assert '\n' not in message
    assert url in message and cache_path(url) in message, message
    assert ('not a readable PyTorch checkpoint' in message
            or message.startswith(f'could not download {url}')), message
    assert cached_files(hub) == []

    # The server's file is fixed: the next build downloads it and loads.
    server.files[TINY], server.cut = data, {}
    assert_loaded(build(TINY_ARCH, url), state_dict)
    assert cached_files(hub) == ['tiny_poolformer.pth']


def test_a_corrupt_cached_file_is_removed_and_downloaded_again(server, hub, tiny_weights,
                                                               logs):
    state_dict, data = tiny_weights
    server.files[TINY] = data
    url = server.url(TINY)
    hub.mkdir(parents=True)
    cached = hub / 'tiny_poolformer.pth'
    cached.write_bytes(data[:len(data) // 3])  # e.g. left by a tool that cached a cut download

    assert_loaded(build(TINY_ARCH, url), state_dict)
    assert server.requests == [TINY]
    assert cached.read_bytes() == data
    warning = next(m for m in logs if 'Removed it' in m)
    assert warning.startswith(f'{cached} (the cached download of {url}) is not a readable '
                              f'PyTorch checkpoint: it is truncated'), warning


def test_a_corrupt_cached_file_without_a_network_names_the_file(server, hub, tiny_weights):
    _, data = tiny_weights
    url = server.url(TINY)
    server.stop()
    hub.mkdir(parents=True)
    cached = hub / 'tiny_poolformer.pth'
    cached.write_bytes(data[:len(data) // 3])
    with pytest.raises(CheckpointError) as error:
        build(TINY_ARCH, url)
    message = str(error.value)
    assert message.startswith(f'could not download {url} to {cached}: '), message
    assert f'The cached {cached} was not a readable checkpoint and has been removed' in message
    assert '\n' not in message and cached_files(hub) == []


def test_a_missing_file_on_the_server_names_the_url(server, hub):
    url = server.url('/weights/no_such.pth')
    with pytest.raises(CheckpointError, match=rf'^could not download {url} to '
                                              rf'{hub}/no_such\.pth: HTTP Error 404'):
        build(TINY_ARCH, url)
    assert cached_files(hub) == []


def test_a_cache_that_cannot_be_written_is_named(server, tmp_path, monkeypatch):
    not_a_directory = tmp_path / 'torch-home'
    not_a_directory.write_text('a file, not a directory')  # fails even for root
    monkeypatch.setenv('TORCH_HOME', str(not_a_directory))
    monkeypatch.setattr(torch.hub, '_hub_dir', None)
    with pytest.raises(CheckpointError, match=rf"^cannot download {server.url(TINY)} into "
                                              rf"torch hub's cache {not_a_directory}/hub/"
                                              rf"checkpoints: Not a directory\. Set "
                                              rf"TORCH_HOME to a writable directory"):
        build(TINY_ARCH, server.url(TINY))
    assert server.requests == []


class _RunsCode:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def test_a_download_that_would_run_code_is_refused_and_not_cached(server, hub, tmp_path):
    marker = tmp_path / 'pwned'
    server.files[TINY] = saved({'stem.conv.weight': _RunsCode(marker)})
    url = server.url(TINY)
    with pytest.raises(UnsafeCheckpointError) as error:
        build(TINY_ARCH, url)
    message = str(error.value)
    assert message.startswith(f'refused to load the download of {url}: it is not a '
                              f'plain-data checkpoint (it would import posix.system)'), message
    assert f'Nothing was saved to {cache_path(url)}' in message and '\n' not in message
    assert cached_files(hub) == [] and not marker.exists()


def test_mmengine_load_from_url_uses_the_same_checked_cache(server, hub, tiny_weights):
    """``load_from=URL`` (mmengine's http(s) loader) goes through the same download."""
    state_dict, data = tiny_weights
    server.files[TINY] = data[:len(data) // 2]
    url = server.url(TINY)
    with pytest.raises(CheckpointError, match='not a readable PyTorch checkpoint'):
        CheckpointLoader.load_checkpoint(url, map_location='cpu')
    assert cached_files(hub) == []

    server.files[TINY] = data
    loaded = CheckpointLoader.load_checkpoint(url, map_location='cpu')
    assert cached_files(hub) == ['tiny_poolformer.pth']
    server.stop()
    assert_loaded(build(TINY_ARCH, url), state_dict)  # init_cfg reads what mmengine cached
    assert all(torch.equal(loaded[k], v) for k, v in state_dict.items())
