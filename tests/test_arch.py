import json

import numpy as np
import pytest

from tvm_ofa import ArchConfig, SearchSpace
from tvm_ofa.errors import ArchError


def test_default_space_matches_the_paper():
    space = SearchSpace()
    assert space.n_blocks == 20 and space.n_stages == 5
    assert space.resolutions[0] == 128 and space.resolutions[-1] == 224 and len(space.resolutions) == 25
    # ((3*3)^2 + (3*3)^3 + (3*3)^4)^5 networks per resolution: about 2e19, as the paper says
    assert space.size(with_resolution=False) == (9**2 + 9**3 + 9**4) ** 5
    assert 1e19 < space.size(with_resolution=False) < 3e19


def test_json_round_trip_and_ofa_style_input(tmp_path):
    space = SearchSpace()
    arch = space.sample(3)
    assert ArchConfig.from_json(arch.to_json()) == arch
    path = tmp_path / "arch.json"
    path.write_text(arch.to_json(indent=2))
    assert ArchConfig.from_json(path) == arch
    # once-for-all's search writes the resolution as "r": [224]
    ofa_style = {"ks": list(arch.ks), "e": list(arch.e), "d": list(arch.d), "r": [arch.resolution]}
    assert ArchConfig.from_dict(ofa_style) == arch


def test_smallest_middle_largest():
    space = SearchSpace()
    small, mid, large = space.smallest(), space.middle(), space.largest()
    assert (small.resolution, mid.resolution, large.resolution) == (128, 176, 224)
    assert set(mid.ks) == {5} and set(mid.e) == {4} and set(mid.d) == {3}
    # the benchmarks' middle subnet keeps its id (and so its tuning records) across versions
    assert space.middle(224).id == "r224-d33333-b3c83b86"
    assert space.validate(mid) == mid


def test_id_is_stable_and_ignores_skipped_slots():
    space = SearchSpace()
    arch = space.smallest(160)
    assert arch.id == space.smallest(160).id
    assert arch.id.startswith("r160-d22222-")
    ks = list(arch.ks)
    ks[3] = 7  # stage 0 slot 3 is skipped at depth 2
    assert ArchConfig(ks=ks, e=arch.e, d=arch.d, resolution=160).id == arch.id
    ks[1] = 7  # slot 1 runs
    assert ArchConfig(ks=ks, e=arch.e, d=arch.d, resolution=160).id != arch.id


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(ks=[3] * 7 + [9] + [3] * 12), "arch.ks[7] = 9: allowed 3, 5, 7"),
        (dict(e=[3] * 4 + [5] + [3] * 15), "arch.e[4] = 5: allowed 3, 4, 6"),
        (dict(d=[2, 2, 5, 2, 2]), "arch.d[2] = 5: allowed 2, 3, 4"),
        (dict(resolution=130), "arch.resolution = 130: allowed 128..224"),
        (dict(ks=[3] * 19, e=[3] * 19), "block slots"),
    ],
)
def test_validation_names_field_index_and_allowed_values(change, message):
    base = dict(ks=[3] * 20, e=[3] * 20, d=[4] * 5, resolution=160)
    base.update(change)
    with pytest.raises(ArchError, match=message.replace("[", r"\[").replace("]", r"\]").replace("..", r"\.\.")):
        SearchSpace().validate(ArchConfig(**base))


def test_bad_json_errors_name_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"ks": [3, 3')
    with pytest.raises(ArchError, match="broken.json: invalid JSON"):
        ArchConfig.from_json(path)
    path.write_text(json.dumps({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "width": 1}))
    with pytest.raises(ArchError, match="unknown key.*width"):
        ArchConfig.from_json(path)
    with pytest.raises(ArchError, match="no-such.json: cannot read"):
        ArchConfig.from_json(tmp_path / "no-such.json")


def test_sampling_mutation_crossover_stay_in_space_and_are_seeded():
    space = SearchSpace()
    rng = np.random.default_rng(0)
    archs = space.sample_many(200, rng)
    assert all(space.contains(a) for a in archs)
    assert space.sample_many(5, 7) == space.sample_many(5, 7)
    assert len({a.id for a in archs}) == 200
    for a, b in zip(archs[::2], archs[1::2]):
        m = space.mutate(a, 0.3, rng)
        c = space.crossover(a, b, rng)
        assert space.contains(m) and space.contains(c)
        assert set(c.d) <= set(a.d) | set(b.d)
    # every choice shows up: sampling is not stuck on a corner
    assert {k for a in archs for k in a.ks} == {3, 5, 7}
    assert {a.resolution for a in archs} == set(space.resolutions)


def test_encoding_is_fixed_length_one_hot_with_skipped_slots_zeroed():
    space = SearchSpace()
    arch = space.smallest(128)
    vec = space.encode(arch)
    assert vec.shape == (space.encoding_size,) == (20 * 3 + 20 * 3 + 25,)
    active = arch.active_blocks()
    assert vec[: 20 * 3].sum() == len(active) == 10
    assert vec[20 * 3 : 20 * 6].sum() == 10
    assert vec[-25:].sum() == 1 and vec[-25] == 1
    for slot in set(range(20)) - set(active):
        assert not vec[slot * 3 : slot * 3 + 3].any()
    batch = space.encode_batch(space.sample_many(8, 1))
    assert batch.shape == (8, space.encoding_size)


def test_space_round_trip_and_tiny_spaces():
    space = SearchSpace(ks_choices=(3, 5), e_choices=(2, 3), d_choices=(1, 2), resolutions=(32,))
    assert SearchSpace.from_dict(space.to_dict()) == space
    assert space.n_blocks == 10
    assert space.contains(space.sample(0))
    with pytest.raises(ArchError, match="odd"):
        SearchSpace(ks_choices=(4,))
