"Integration checks of vae_course.data: the paths a user hits with real folders and bad input."
import warnings
import numpy as np
import pytest
import torch
from PIL import Image
from vae_course.data import (ImageFolder, InMemoryLoader, OpenMoji, load_dataset, make_loaders,
                             render_openmoji, data_dir)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(30):
        sub = tmp_path / f"s{i % 3}"; sub.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)).save(sub / f"{i}.png")
    (tmp_path / "s0" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return tmp_path


def test_folder_split_is_deterministic_and_disjoint(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr, va = ImageFolder(folder, 16, "train", valid_pct=0.3), ImageFolder(folder, 16, "valid", valid_pct=0.3)
        tr2 = ImageFolder(folder, 32, "train", valid_pct=0.3)
    assert set(tr.names).isdisjoint(va.names)
    assert len(tr) + len(va) == 30
    assert tr.names == tr2.names  # the split depends on paths, not on the size


def test_corrupt_file_is_one_warning_not_a_crash(folder):
    with pytest.warns(UserWarning, match=r"skipped 1 file\(s\) .*: 1 unreadable or corrupt") as rec:
        ds = ImageFolder(folder, 16, "all")
    assert len([w for w in rec if "skipped" in str(w.message)]) == 1
    batches = list(make_loaders(ds, batch_size=8)[0])
    assert all(b.shape == (8, 3, 16, 16) for b in batches)


def test_missing_and_empty_folders_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_dataset("folder", tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no images"):
        load_dataset("folder", tmp_path)


def test_openmoji_cache_is_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("VAE_COURSE_DATA", str(tmp_path))
    names, imgs = render_openmoji(16, subset=["1F600", "1F601", "1F602"])
    assert imgs.shape == (3, 16, 16, 3) and imgs.dtype == np.uint8
    cached = list(data_dir().glob("openmoji_custom*_16px.npz"))
    assert len(cached) == 1 and not list(data_dir().glob("*.tmp*"))
    names2, imgs2 = render_openmoji(16, subset=["1F600", "1F601", "1F602"])
    assert names == names2 and np.array_equal(imgs, imgs2)


def test_in_memory_loader_matches_dataset_items():
    ds = OpenMoji(32, "valid", value_range=(-1, 1))
    dl = InMemoryLoader(ds.images, batch_size=4, shuffle=False, value_range=(-1, 1))
    first = next(iter(dl))
    torch.testing.assert_close(first, torch.stack([ds[i] for i in range(4)]))


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="value_range must be"):
        OpenMoji(32, "train", value_range=(0, 255))
    with pytest.raises(ValueError, match="split must be"):
        OpenMoji(32, "test")
    with pytest.raises(ValueError, match="subset must be"):
        OpenMoji(32, subset="animals")


def test_openmoji_validation_shares_no_drawing_with_training():
    "The grouped split: no validation emoji has a variant (skin tone, gender, hair, man/woman/person) in training."
    from vae_course.data import OpenMoji, openmoji_group
    tr, va = OpenMoji(32, "train"), OpenMoji(32, "valid")
    assert len(tr) + len(va) == len(OpenMoji(32, "all"))
    assert {openmoji_group(n) for n in tr.names}.isdisjoint(openmoji_group(n) for n in va.names)
    assert len({openmoji_group(n) for n in va.names}) >= 10

def test_split_group_parameter(tmp_path):
    from vae_course.recipes import load_recipe, run_recipe
    import numpy as np, json
    from PIL import Image
    with pytest.raises(ValueError, match="'split_group' groups the files of data_source='folder'"):
        load_recipe("default", tier="smoke", split_group="folder")
    with pytest.raises(ValueError, match="neither 'folder' nor a regular expression"):
        load_recipe("default", tier="smoke", data_source="folder", data_path=str(tmp_path), split_group="(bad")
    for i in range(30):
        for j in range(3):
            d = tmp_path / "imgs" / f"scene{i}"; d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.random.default_rng(i).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(d / f"{j}.png")
    run = run_recipe(load_recipe("default", tier="smoke", steps=2, image_size=32, channels=[8, 16], latent_ch=1, batch_size=4,
                                 data_source="folder", data_path=str(tmp_path / "imgs"), split_group="folder",
                                 out_dir=str(tmp_path / "run")), log=lambda *a: None)
    m = json.loads((run / "metrics.json").read_text())
    assert m["params"]["split_group"] == "folder" and isinstance(m["train_psnr"], float) and isinstance(m["val_psnr"], float)
