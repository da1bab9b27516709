"""JPEG decoding from bytes (analysis.jpeg) against the PIL imagefolder path; GPU tests skip without CUDA.

Tolerances are in uint8 steps (1/255 before normalisation, 1/255/std after it). torchvision's libjpeg
and Pillow's decode to equal pixels here (1 step allowed); torch's antialiased uint8 resize rounds
differently from Pillow's on a fraction of a percent of the pixels, by 1 step (1 step max, 0.05 mean
allowed). nvjpeg has its own IDCT and chroma upsampling: the GPU is held to the CPU on average (1.5
steps) with a loose maximum (40 steps), to be tightened once measured on a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torchvision.transforms.v2.functional import pil_to_tensor

from analysis.data.source import limited_indices
from analysis.data import jpeg
from analysis.cli import main
from analysis.data import load_image, open_data
from analysis.errors import DataError
from analysis.data.jpeg import JpegLoader, decode_jpegs, resolve_decode

SIZES = [(60, 45), (120, 90), (45, 60), (90, 68), (100, 75)]
BROKEN_JPEG = b"\xff\xd8\xff\xe0 not really a jpeg"  # starts like a JPEG, so it reaches the decoder


def natural(width: int, height: int, seed: int) -> Image.Image:
    """A smooth colour gradient with a shape and mild noise, so JPEG chroma and edges matter."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    corners = rng.uniform(0, 255, (3, 3))
    rgb = corners[0] + np.stack([xx, yy], -1) @ (corners[1:] - corners[0])
    image = Image.fromarray(np.clip(rgb + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8))
    box = sorted(rng.integers(0, width, 2)) + sorted(rng.integers(0, height, 2))
    ImageDraw.Draw(image).ellipse((box[0], box[2], box[1], box[3]), fill=tuple(rng.integers(0, 256, 3).tolist()))
    return image


@pytest.fixture
def jpeg_folder(tmp_path: Path) -> Path:
    """Three classes of JPEGs in five sizes, plus a grey JPEG, a CMYK JPEG and a PNG."""
    root = tmp_path / "jpegs"
    for c, name in enumerate(["ant", "bee", "cat"]):
        (root / name).mkdir(parents=True)
        for i, (w, h) in enumerate((SIZES[c:] + SIZES[:c])[:3]):
            natural(w, h, 10 * c + i).save(root / name / f"{i}.jpg", quality=90)
    natural(70, 50, 100).convert("L").save(root / "ant" / "grey.jpg", quality=90)
    natural(64, 48, 101).convert("CMYK").save(root / "bee" / "cmyk.jpg", quality=90)
    natural(50, 70, 102).save(root / "cat" / "lossless.png")
    return root


def read_jpegs(folder: Path) -> tuple[list[str], list[torch.Tensor]]:
    files = sorted(str(p) for p in folder.rglob("*.jpg"))
    return files, [torch.from_numpy(np.fromfile(f, dtype=np.uint8)) for f in files]


def batches(loader) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, ys, ids = zip(*((x.cpu(), y, i) for x, y, i in loader))
    return torch.cat(xs), torch.cat(ys), torch.cat(ids)


def steps(a: torch.Tensor, b: torch.Tensor, source) -> torch.Tensor:
    """|a - b| of normalised images in uint8 steps."""
    return (a - b).abs() * torch.tensor(source.details["std"]).view(-1, 1, 1) * 255


def pil_path(source) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    items = [source.dataset[i] for i in range(len(source.dataset))]
    return torch.stack([x for x, _, _ in items]), torch.tensor([y for _, y, _ in items]), torch.arange(len(items))


def test_jpegs_decode_to_the_pixels_pil_reads(jpeg_folder: Path) -> None:
    files, data = read_jpegs(jpeg_folder)
    for path, image in zip(files, decode_jpegs(data, files, torch.device("cpu"))):
        reference = pil_to_tensor(load_image(path, "RGB"))
        assert image.shape == reference.shape and image.dtype == torch.uint8
        assert (image.int() - reference.int()).abs().max() <= 1, path


@pytest.mark.parametrize("image_size, channels", [(32, 3), (56, 3), (40, 1)])
def test_byte_path_matches_the_pil_path(jpeg_folder: Path, image_size: int, channels: int) -> None:
    source = open_data(f"imagefolder:{jpeg_folder}", image_size=image_size, channels=channels)
    x_pil, y_pil, ids_pil = pil_path(source)
    x, y, ids = batches(JpegLoader(source, 4, torch.device("cpu")))
    assert x.shape == x_pil.shape == (len(source.dataset), channels, image_size, image_size)
    assert x.dtype == torch.float32
    assert torch.equal(y, y_pil) and torch.equal(ids, ids_pil)
    diff = steps(x, x_pil, source)
    assert diff.max() <= 1 + 1e-3 and diff.mean() <= 0.05


def test_workers_and_limit_give_the_same_batches(jpeg_folder: Path) -> None:
    source = open_data(f"imagefolder:{jpeg_folder}", image_size=32)
    x0, y0, ids0 = batches(JpegLoader(source, 3, torch.device("cpu"), limit=7))
    x1, y1, ids1 = batches(JpegLoader(source, 3, torch.device("cpu"), workers=1, limit=7))
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert ids1.tolist() == limited_indices(source.dataset, 7)  # the stratified subset of make_loader


def test_files_the_decoder_rejects_are_retried_alone_then_read_by_pil(
    jpeg_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nvjpeg fails a whole batch for one file it lacks (as it may for CMYK): the batch still comes out."""
    source = open_data(f"imagefolder:{jpeg_folder}", image_size=32)
    expected = batches(JpegLoader(source, 4, torch.device("cpu")))
    cmyk_bytes = (jpeg_folder / "bee" / "cmyk.jpg").stat().st_size
    decode, pil_reads = jpeg._decode_jpeg, []

    def picky(data, device):
        if isinstance(data, list) or data.numel() == cmyk_bytes:
            raise RuntimeError("nvjpeg: JPEG not supported")
        return decode(data, device)

    monkeypatch.setattr(jpeg, "_decode_jpeg", picky)
    monkeypatch.setattr(jpeg, "load_image", lambda path, mode: pil_reads.append(path) or load_image(path, mode))
    for got, want in zip(batches(JpegLoader(source, 4, torch.device("cpu"))), expected):
        assert torch.equal(got, want)
    assert sorted(Path(p).name for p in pil_reads) == ["cmyk.jpg", "lossless.png"]  # a PNG always goes to PIL


@pytest.mark.parametrize("name, content", [("broken.jpg", BROKEN_JPEG), ("text.png", b"hello")])
def test_unreadable_file_is_a_data_error_naming_it(jpeg_folder: Path, name: str, content: bytes) -> None:
    (jpeg_folder / "bee" / name).write_bytes(content)
    source = open_data(f"imagefolder:{jpeg_folder}", image_size=32)
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        batches(JpegLoader(source, 4, torch.device("cpu")))


def test_decode_option_resolves_by_source_and_device(jpeg_folder: Path) -> None:
    folder = open_data(f"imagefolder:{jpeg_folder}")
    synthetic = open_data("synthetic:n=4")
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_decode("auto", folder, cuda) == "gpu" and resolve_decode("cpu", folder, cuda) == "cpu"
    assert resolve_decode("auto", folder, cpu) == "cpu" and resolve_decode("auto", synthetic, cuda) == "cpu"
    assert resolve_decode("gpu", folder, cuda) == "gpu"
    for decode, source, device in [("gpu", folder, cpu), ("gpu", synthetic, cuda), ("fast", folder, cpu)]:
        with pytest.raises(DataError):
            resolve_decode(decode, source, device)


def test_collect_decode_gpu_without_cuda_is_one_sentence(jpeg_folder: Path, tmp_path: Path, capsys) -> None:
    args = ["collect", "--model", "se_resnet20", "--random-init", "--data", f"imagefolder:{jpeg_folder}",
            "--out", str(tmp_path / "run"), "--image-size", "32", "--device", "cpu", "--decode", "gpu", "--quiet"]
    assert main(args) == 2
    assert "needs an imagefolder: source on a CUDA device" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("channels", [3, 1])
def test_nvjpeg_path_matches_the_cpu_path(jpeg_folder: Path, channels: int) -> None:
    source = open_data(f"imagefolder:{jpeg_folder}", image_size=48, channels=channels)
    files, data = read_jpegs(jpeg_folder)
    cpus = decode_jpegs(data, files, torch.device("cpu"))
    for gpu, cpu in zip(decode_jpegs(data, files, torch.device("cuda")), cpus):
        assert gpu.is_cuda and gpu.shape == cpu.shape
        diff = (gpu.cpu().float() - cpu.float()).abs()
        assert diff.mean() <= 1.5 and diff.max() <= 40
    x_cpu, y_cpu, _ = batches(JpegLoader(source, 4, torch.device("cpu")))
    x_gpu, y_gpu, _ = batches(JpegLoader(source, 4, torch.device("cuda")))
    assert torch.equal(y_gpu, y_cpu)
    diff = steps(x_gpu, x_cpu, source)
    assert diff.mean() <= 1.5 and diff.max() <= 40


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nvjpeg_names_a_corrupt_file(jpeg_folder: Path) -> None:
    (jpeg_folder / "bee" / "broken.jpg").write_bytes(BROKEN_JPEG)
    source = open_data(f"imagefolder:{jpeg_folder}", image_size=32)
    with pytest.raises(DataError, match=r"broken\.jpg"):
        batches(JpegLoader(source, 16, torch.device("cuda")))
