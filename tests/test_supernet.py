import pytest
import torch

from conftest import randomize_
from ofa_oracle import import_official_ofa
from tvm_ofa import ArchConfig, OFAMobileNetV3, SearchSpace, load_supernet, save_supernet
from tvm_ofa.errors import ArchError, CheckpointError
from tvm_ofa.nn.profile import count_macs, count_params, subnet_layers


def _archs(space, n=6, seed=0):
    return [space.smallest(), space.largest()] + space.sample_many(n - 2, seed)


def test_extracted_subnet_equals_supernet_at_every_resolution(tiny_supernet, tiny_space):
    for arch in _archs(tiny_space, 8):
        sub = tiny_supernet.extract(arch)
        x = torch.randn(2, 3, arch.resolution, arch.resolution)
        with torch.no_grad():
            expected, got = tiny_supernet(x, arch), sub(x)
        assert got.shape == (2, 10)
        assert (expected - got).abs().max().item() <= 1e-5, arch.id


def test_extracted_subnet_holds_only_active_weights_and_is_independent(tiny_supernet, tiny_space):
    arch = tiny_space.smallest()
    sub = tiny_supernet.extract(arch)
    n_sub = sum(p.numel() for p in sub.parameters())
    assert n_sub < sum(p.numel() for p in tiny_supernet.parameters()) / 2
    assert n_sub == count_params(arch, 0.35, 10)
    assert not any(type(m).__module__.endswith("elastic") for m in sub.modules())
    x = torch.randn(1, 3, 32, 32)
    before = sub(x).detach().clone()
    with torch.no_grad():
        tiny_supernet.blocks[1].conv.point_linear.conv.conv.weight.add_(1.0)
    try:
        assert torch.equal(sub(x).detach(), before)
    finally:
        with torch.no_grad():
            tiny_supernet.blocks[1].conv.point_linear.conv.conv.weight.sub_(1.0)


def test_kernel_transform_is_used_for_smaller_kernels(tiny_supernet, tiny_space):
    dw = tiny_supernet.blocks[1].conv.depth_conv.conv
    full = dw.conv.weight[:4]
    k3 = dw.active_filter(4, 3)
    assert k3.shape == (4, 1, 3, 3)
    # with non-identity matrices the 3x3 kernel is not the plain centre crop
    assert not torch.allclose(k3, full[:, :, 2:5, 2:5])
    assert torch.equal(dw.active_filter(4, 7), full)


def test_set_active_subnet_matches_forward_with_arch(tiny_supernet, tiny_space):
    arch = tiny_space.sample(5)
    x = torch.randn(1, 3, arch.resolution, arch.resolution)
    tiny_supernet.set_active_subnet(arch)
    with torch.no_grad():
        assert torch.equal(tiny_supernet(x), tiny_supernet(x, arch))
    with pytest.raises(ArchError, match=r"arch.resolution = 64"):
        tiny_supernet.set_active_subnet(ArchConfig(arch.ks, arch.e, arch.d, resolution=64))


def test_channel_sorting_keeps_the_largest_network_function(tiny_space):
    torch.manual_seed(1)
    net = randomize_(OFAMobileNetV3(n_classes=10, width_mult=0.35, space=tiny_space, dropout_rate=0)).eval()
    arch = tiny_space.largest()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        before = net(x, arch)
        net.sort_channels()
        after = net(x, arch)
    assert (before - after).abs().max().item() < 1e-5
    w = net.blocks[1].conv.point_linear.conv.conv.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(w[:-1] >= w[1:])


def test_analytic_macs_match_the_module(tiny_supernet, tiny_space):
    for arch in _archs(tiny_space, 4, seed=2):
        sub = tiny_supernet.extract(arch)
        macs = 0

        def hook(module, inputs, output):
            nonlocal macs
            if isinstance(module, torch.nn.Conv2d):
                macs += output[0].numel() * module.in_channels // module.groups * module.kernel_size[0] ** 2
            elif isinstance(module, torch.nn.Linear):
                macs += module.in_features * module.out_features

        handles = [m.register_forward_hook(hook) for m in sub.modules()
                   if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        with torch.no_grad():
            sub(torch.randn(1, 3, arch.resolution, arch.resolution))
        for h in handles:
            h.remove()
        assert macs == count_macs(arch, 0.35, 10)
        assert sum(1 for layer in subnet_layers(arch, 0.35, 10)) == len(handles)


def test_modules_and_layers_share_one_geometry(tiny_supernet, tiny_space):
    """The extracted module, the profile's layers and the compiler's workloads are all derived
    from ``subnet_geometry``: each convolution the module runs has the shape its layer names."""
    from tvm_ofa.nn.ofa_mbv3 import subnet_geometry
    from tvm_ofa.predict.workloads import NetConfig, subnet_workloads

    net = NetConfig(width_mult=0.35, n_classes=10, stem_stride=tiny_supernet.stem_stride)
    for arch in _archs(tiny_space, 3, seed=5):
        geo = subnet_geometry(arch, 0.35, 10, tiny_supernet.stem_stride)
        sub = tiny_supernet.extract(arch)
        convs = [m for m in sub.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        layers = subnet_layers(arch, 0.35, 10, tiny_supernet.stem_stride)
        assert [(getattr(m, "in_channels", getattr(m, "in_features", 0)),
                 getattr(m, "out_channels", getattr(m, "out_features", 0))) for m in convs] == \
            [(layer.cin, layer.cout) for layer in layers]
        assert len(sub.blocks) + 1 == len(geo.blocks)
        assert [b.kernel for b in geo.blocks[1:]] == [blk.depthwise.conv.kernel_size[0] for blk in sub.blocks]
        dw = [w for w in subnet_workloads(arch, net) if w.kind == "dwconv"]
        assert [(w.cin, w.k, w.s, w.h) for w in dw] == [(b.mid, b.kernel, b.stride, b.size_in) for b in geo.blocks]


def test_paper_sized_supernet_macs():
    space = SearchSpace()
    # once-for-all reports ~230M MACs for its largest w1.0 subnet at 224 px... our count for the
    # largest arch must at least be in that range, the smallest well under 100M at 128 px
    largest = count_macs(space.largest(224))
    smallest = count_macs(space.smallest(128))
    assert 150e6 < largest < 600e6
    assert smallest < 60e6


def test_extracted_subnet_exports_with_torch_export(tiny_supernet, tiny_space):
    arch = tiny_space.sample(11)
    sub = tiny_supernet.extract(arch)
    x = torch.randn(1, 3, arch.resolution, arch.resolution)
    ep = torch.export.export(sub, (x,))
    with torch.no_grad():
        assert (ep.module()(x) - sub(x)).abs().max().item() <= 1e-5


def test_own_checkpoint_round_trip(tiny_supernet, tiny_space, tmp_path):
    path = save_supernet(tiny_supernet, tmp_path / "net.pt", meta={"note": "test"})
    net = load_supernet(path)
    assert net.space == tiny_space and net.width_mult == 0.35 and net.n_classes == 10
    arch = tiny_space.sample(4)
    x = torch.randn(1, 3, arch.resolution, arch.resolution)
    with torch.no_grad():
        assert torch.equal(net(x, arch), tiny_supernet(x, arch))


def test_truncated_and_mismatched_checkpoints_fail_clearly(tiny_supernet, tmp_path):
    path = save_supernet(tiny_supernet, tmp_path / "net.pt")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut.pt: not a readable PyTorch checkpoint"):
        load_supernet(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_supernet(tmp_path / "absent.pt")

    state = torch.load(path, weights_only=True)
    del state["state_dict"]["blocks.3.conv.point_linear.conv.conv.weight"]
    state["state_dict"]["first_conv.conv.weight"] = torch.zeros(5, 3, 3, 3)
    state["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as err:
        load_supernet(tmp_path / "bad.pt")
    msg = str(err.value)
    assert "\n" not in msg
    assert "1 missing: blocks.3.conv.point_linear.conv.conv.weight" in msg
    assert "1 unexpected: extra.weight" in msg
    assert "first_conv.conv.weight (5, 3, 3, 3) (expected (8, 3, 3, 3))" in msg


def _official_checkpoint(tmp_path, width, layout):
    """A checkpoint in once-for-all's layout, written by its own implementation (the ``ofa``
    package is the oracle), with random weights."""
    Official = import_official_ofa()
    if Official is None:
        pytest.skip("the official once-for-all package (pip install --no-deps ofa) is not installed")
    torch.manual_seed(3)
    off = Official(n_classes=10, width_mult=width, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6],
                   depth_list=[2, 3, 4], dropout_rate=0)
    randomize_(off, scale=0.05)
    off.eval()
    state = off.state_dict()
    payload = {"state_dict": state, "epoch": 1} if layout == "dict" else state
    path = tmp_path / f"ofa_mbv3_d234_e346_k357_w{width}"
    torch.save(payload, path)
    return off, path


@pytest.mark.parametrize("width, layout", [(1.0, "dict"), (1.2, "bare")])
def test_official_checkpoint_gives_the_official_logits(tmp_path, width, layout):
    off, path = _official_checkpoint(tmp_path, width, layout)
    net = load_supernet(path)
    assert net.width_mult == width and net.n_classes == 10
    assert net.space.ks_choices == (3, 5, 7) and net.space.d_choices == (2, 3, 4)
    for arch in [net.space.largest(128), net.space.smallest(128), net.space.sample(0, resolution=128)]:
        off.set_active_subnet(ks=list(arch.ks), e=list(arch.e), d=list(arch.d))
        x = torch.randn(1, 3, arch.resolution, arch.resolution)
        with torch.no_grad():
            expected = off(x)
            assert expected.abs().max() > 0.1  # not a degenerate all-zero comparison
            assert (net(x, arch) - expected).abs().max().item() <= 1e-4
            assert (net.extract(arch)(x) - expected).abs().max().item() <= 1e-4
