"""Our own generator format: state dict (.safetensors or .pt) + JSON config, written atomically."""

import json
import os

import pytest
import torch

from models.stylegan2 import CheckpointError, GeneratorConfig, load_generator, save_generator


@pytest.mark.parametrize('ext', ['.safetensors', '.pt'])
def test_round_trip(tmp_path, ext):
    torch.manual_seed(0)
    cfg = GeneratorConfig.small(64)
    G = cfg.build().eval()
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    path = tmp_path / f'generator{ext}'
    save_generator(G, cfg, path)
    assert sorted(os.listdir(tmp_path)) == sorted([f'generator{ext}', 'generator.json']), 'no temp files left'
    meta = json.loads((tmp_path / 'generator.json').read_text())
    assert meta['generator']['img_resolution'] == 64

    G2, cfg2 = load_generator(path)
    assert cfg2 == cfg
    z = torch.randn(2, cfg.z_dim)
    with torch.no_grad():
        assert torch.equal(G2(z, truncation_psi=0.5), G(z, truncation_psi=0.5))

    # The config is embedded too, so a lone file still loads.
    (tmp_path / 'generator.json').unlink()
    G3, cfg3 = load_generator(path)
    assert cfg3 == cfg


def test_bad_config_and_bad_files(tmp_path):
    cfg = GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, mapping_layers=1, channel_base=64, channel_max=8)
    G = cfg.build()
    path = tmp_path / 'g.safetensors'
    save_generator(G, cfg, path)
    (tmp_path / 'g.json').write_text(json.dumps({'generator': dict(cfg.to_dict(), img_resolution=16)}))
    with pytest.raises(CheckpointError, match='do not match'):
        load_generator(path)
    (tmp_path / 'g.json').write_text(json.dumps({'generator': {'bogus': 1}}))
    with pytest.raises(CheckpointError, match='GeneratorConfig'):
        load_generator(path)
    with pytest.raises(ValueError, match='safetensors or .pt'):
        save_generator(G, cfg, tmp_path / 'g.bin')
    empty = tmp_path / 'empty.safetensors'
    empty.write_bytes(b'')
    with pytest.raises(CheckpointError, match='expected'):
        load_generator(empty)
    with pytest.raises(CheckpointError):
        load_generator(tmp_path / 'missing.pt')
