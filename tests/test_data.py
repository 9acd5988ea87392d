"""File-based checks of `srflow_nb.images`, `srflow_nb.resize` and `srflow_nb.datasets`: the image I/O policy on real files of every awkward kind, MATLAB `imresize`
references, the committed demo set against its manifest, and datasets that skip bad files loudly."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from srflow_nb.datasets import demo_images, demo_manifest, demo_root, pixels_sha256, verify_demo
from srflow_nb.srdata import PairedPatchDataset, SRFolderDataset
from srflow_nb.images import ImageError, load_image, save_image, to_tensor, to_uint8, write_png16
from srflow_nb.resize import imresize

FIX = Path(__file__).parent / "fixtures" / "matlab_imresize"
RGB = np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)


# --- MATLAB imresize -------------------------------------------------------------------------------------------
CASES = [("down_down_aa", lambda: np.arange(64.).reshape(8, 8), (3, 4)),
         ("down_down_irregular_aa", lambda: np.arange(64.).reshape(8, 8), (5, 7)),
         ("down_down_x3_aa", lambda: np.arange(225.).reshape(15, 15), (5, 5)),
         ("down_down_butterfly_irregular_aa", lambda: np.asarray(Image.open(FIX / "butterfly.png").convert("RGB")) / 255.0, (123, 234))]


@pytest.mark.parametrize("name,make,size", CASES)
def test_imresize_matches_matlab(name, make, size):
    x, ref = make(), scipy.io.loadmat(FIX / f"{name}.mat")[name]
    assert np.abs(imresize(x, size=size) - ref).max() < 1e-10                       # numpy float64
    t = torch.from_numpy(x).float()
    t = t.permute(2, 0, 1)[None] if t.ndim == 3 else t
    out = imresize(t, size=size)
    out = (out[0].permute(1, 2, 0) if out.ndim == 4 else out).double().numpy()
    assert np.abs(out - ref).max() <= 3e-5                                            # torch float32


# --- load_image policy -----------------------------------------------------------------------------------------
def test_rgb_gray_palette(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    assert np.array_equal(load_image(tmp_path / "a.png"), RGB)
    Image.fromarray(RGB[..., 1]).save(tmp_path / "g.png")
    g = load_image(tmp_path / "g.png")
    assert g.shape == (24, 32, 3) and all(np.array_equal(g[..., c], RGB[..., 1]) for c in range(3))
    Image.fromarray(RGB).convert("1").save(tmp_path / "bw.png")
    assert set(np.unique(load_image(tmp_path / "bw.png"))) <= {0, 255}
    Image.fromarray(RGB).quantize(8).save(tmp_path / "p.png")
    p = load_image(tmp_path / "p.png")
    assert p.shape == (24, 32, 3) and len(np.unique(p.reshape(-1, 3), axis=0)) <= 8


def test_alpha_is_composited_on_white(tmp_path):
    alpha = np.zeros((24, 32), np.uint8); alpha[:, 16:] = 255
    Image.fromarray(np.dstack([RGB, alpha]), "RGBA").save(tmp_path / "rgba.png")
    a = load_image(tmp_path / "rgba.png")
    assert (a[:, :16] == 255).all() and np.array_equal(a[:, 16:], RGB[:, 16:])
    # transparent palette entry
    pal = Image.fromarray(np.zeros((4, 4), np.uint8), "P"); pal.putpalette([0, 0, 0] * 256); pal.info["transparency"] = 0
    pal.save(tmp_path / "tp.png", transparency=0)
    assert (load_image(tmp_path / "tp.png") == 255).all()


def test_16bit(tmp_path):
    g16 = (np.arange(24 * 32).reshape(24, 32) * 83 % 65536).astype(np.uint16)
    write_png16(tmp_path / "g16.png", g16)
    assert np.array_equal(load_image(tmp_path / "g16.png")[..., 0], np.round(g16 / 257).astype(np.uint8))
    assert np.allclose(load_image(tmp_path / "g16.png", dtype=np.float32)[..., 2], g16 / 65535, atol=1e-7)
    rgb16 = (np.arange(24 * 32 * 3).reshape(24, 32, 3) * 211 % 65536).astype(np.uint16)
    write_png16(tmp_path / "c16.png", rgb16)
    assert np.array_equal(load_image(tmp_path / "c16.png"), (rgb16 >> 8).astype(np.uint8))   # Pillow keeps the high byte


def test_exif_rotation(tmp_path):
    smooth = np.stack([*np.meshgrid(np.linspace(0, 255, 32), np.linspace(0, 255, 24)), np.full((24, 32), 60.0)], -1).astype(np.uint8)
    for orientation, expect in [(3, np.rot90(smooth, 2)), (6, np.rot90(smooth, -1)), (8, np.rot90(smooth, 1))]:
        exif = Image.Exif(); exif[0x0112] = orientation
        Image.fromarray(smooth).save(tmp_path / f"o{orientation}.jpg", exif=exif, quality=95)
        got = load_image(tmp_path / f"o{orientation}.jpg")
        assert got.shape == expect.shape and np.abs(got.astype(float) - expect).mean() < 3


@pytest.mark.parametrize("kind,content,msg", [
    ("text.png", b"this is not an image", "not a readable image"),
    ("empty.jpg", b"", "not a readable image"),
    ("header_only.png", b"\x89PNG\r\n\x1a\n", "not a readable image"),
])
def test_bad_files_raise_image_error_naming_the_file(tmp_path, kind, content, msg):
    p = tmp_path / kind; p.write_bytes(content)
    with pytest.raises(ImageError, match=msg) as e: load_image(p)
    assert str(p) in str(e.value) and isinstance(e.value, ValueError)


def test_truncated_and_corrupt(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    raw = (tmp_path / "big.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ImageError, match="trunc.png"): load_image(tmp_path / "trunc.png")
    Image.fromarray(RGB).save(tmp_path / "j.jpg"); jb = (tmp_path / "j.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(jb[:len(jb) // 3])
    with pytest.raises(ImageError, match="trunc.jpg"): load_image(tmp_path / "trunc.jpg")


def test_missing_folder_tiny_and_float(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such image file"): load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a folder"): load_image(tmp_path)
    Image.fromarray(RGB[:5, :7]).save(tmp_path / "tiny.png")
    with pytest.raises(ImageError, match=r"tiny.png: image is 5x7 px, smaller than the 16 px"): load_image(tmp_path / "tiny.png", min_size=16)
    Image.fromarray(np.zeros((4, 4), np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(ImageError, match="mode 'F'"): load_image(tmp_path / "f.tif")


def test_save_image_round_trip_and_quantisation(tmp_path):
    t = to_tensor(RGB)
    save_image(tmp_path / "t.png", t)
    assert np.array_equal(load_image(tmp_path / "t.png"), RGB)
    x = torch.full((1, 3, 2, 2), 2.5 / 255)
    assert to_uint8(x)[0, 0, 0] == 2 and to_uint8(torch.full((1, 3, 2, 2), 3.5 / 255))[0, 0, 0] == 4   # half to even
    assert to_uint8(torch.full((1, 3, 2, 2), 3.99 / 255), truncate=True)[0, 0, 0] == 3
    with pytest.raises(ValueError, match="only .png"): save_image(tmp_path / "t.jpg", RGB)
    assert not list(tmp_path.glob("*.tmp"))


# --- demo set --------------------------------------------------------------------------------------------------
def test_committed_demo_set_matches_manifest():
    assert verify_demo() == []
    man = demo_manifest()
    for e in man:
        if e["split"] in ("val", "test"):
            img = load_image(demo_root() / e["file"])
            assert pixels_sha256(img) == e["pixels_sha256"] and img.shape == (256, 256, 3)
    splits = {e["name"]: e["split"] for e in man}
    assert len(splits) == len(man) and sum(s == "test" for s in splits.values()) >= 6
    assert all("GPL" not in e["licence"] for e in man)
    assert len(demo_images("test")) == sum(s == "test" for s in splits.values())


# --- datasets skip bad files loudly ----------------------------------------------------------------------------
def test_datasets_warn_and_skip_bad_files(tmp_path):
    for i in range(2): Image.fromarray(np.roll(RGB, i, 0).repeat(4, 0).repeat(4, 1)).save(tmp_path / f"ok{i}.png")
    (tmp_path / "bad.png").write_bytes(b"nope")
    Image.fromarray(RGB[:8, :8]).save(tmp_path / "tiny.png")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        d = PairedPatchDataset(sorted(tmp_path.glob("*.png")), scale=4, patch_size=32)
    msg = " ".join(str(x.message) for x in w)
    assert len(d.sources) == 2 and "bad.png" in msg and "tiny.png" in msg and "skipped 2 of 4" in msg
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = SRFolderDataset(tmp_path, scale=4, multiple=16)
    assert len(s) == 2 and any("bad.png" in str(x.message) for x in w)
    assert s[0]["hr"].shape == (3, 96, 128) and s[0]["lr"].shape == (3, 24, 32)
    with pytest.raises(ValueError, match="no usable image"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            PairedPatchDataset([tmp_path / "bad.png"], scale=4, patch_size=32)


def test_patches_do_not_depend_on_dataloader_workers():
    ds = PairedPatchDataset(demo_images("val"), 4, 32, patches_per_image=4, jitter=2, seed=0)
    load = lambda n: [b["hr"] for b in torch.utils.data.DataLoader(ds, batch_size=4, num_workers=n)]
    assert all(torch.equal(a, b) for a, b in zip(load(0), load(2)))
