"""Small data-set files written by the tests: CIFAR-10 binary records, folders of photos,
tar archives (well-formed and hostile) and damaged images."""
import io
import struct
import tarfile
import zlib

import numpy as np

RECORD = 3073


def cifar_records(n, seed=0, first_label=0):
    """(bytes, images uint8 (n, 3, 32, 32), labels): ``n`` records of the binary format.
    Pixel values depend on channel, row and column, so a reader that mixes up the order
    (HWC for CHW, rows for columns) gets other images."""
    rng = np.random.default_rng(seed)
    labels = ((np.arange(n) + first_label) % 10).astype(np.uint8)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    images[:, 0, 0, 0], images[:, 2, 31, 30] = 0, 255
    records = np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1)
    return records.tobytes(), images, labels.astype(np.int64)


def make_cifar(folder, n_test=10, n_train=None, meta=None, seed=0):
    """Write ``test_batch.bin`` (and five ``data_batch_*.bin`` of ``n_train`` records each
    when given) into ``folder``; ``meta``: lines of ``batches.meta.txt``. Returns
    ``{"test": (images, labels), "train": (images, labels)}``."""
    folder.mkdir(parents=True, exist_ok=True)
    blob, images, labels = cifar_records(n_test, seed=seed)
    (folder / "test_batch.bin").write_bytes(blob)
    out = {"test": (images, labels)}
    if n_train:
        parts = [cifar_records(n_train, seed=seed + 1 + i, first_label=i) for i in range(5)]
        for i, (b, _, _) in enumerate(parts):
            (folder / f"data_batch_{i + 1}.bin").write_bytes(b)
        out["train"] = (np.concatenate([p[1] for p in parts]),
                        np.concatenate([p[2] for p in parts]))
    if meta is not None:
        (folder / "batches.meta.txt").write_text("\n".join(meta) + "\n\n")
    return out


def make_tar(path, members, mode="w:gz"):
    """A tar archive of ``members``: (name, bytes) for a file, (name, None) for a folder,
    (name, "->target") for a symbolic link, (name, "=>target") for a hard link,
    (name, "chr") for a character device."""
    with tarfile.open(path, mode) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(data, str) and data.startswith("->"):
                info.type, info.linkname = tarfile.SYMTYPE, data[2:]
                tar.addfile(info)
            elif isinstance(data, str) and data.startswith("=>"):
                info.type, info.linkname = tarfile.LNKTYPE, data[2:]
                tar.addfile(info)
            elif data == "chr":
                info.type = tarfile.CHRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def folder_tar(path, root, top):
    """Archive the folder ``root`` as ``top/...`` (its files and sub-folders, sorted)."""
    members = [(top, None)]
    for p in sorted(root.rglob("*")):
        rel = f"{top}/{p.relative_to(root).as_posix()}"
        members.append((rel, None if p.is_dir() else p.read_bytes()))
    return make_tar(path, members)


COLOURS = {"cats": (220, 40, 40), "dogs": (40, 40, 220), "owls": (40, 200, 40)}


def make_photos(root, per_class=6, classes=COLOURS, size=(20, 24), seed=0):
    """A folder of photos, one sub-folder per class, each class a noisy colour, half PNG
    and half JPEG; returns the number of images written."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    n = 0
    for name, colour in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(-25, 26, size + (3,))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            ext = "png" if i % 2 else "jpg"
            Image.fromarray(pixels).save(root / name / f"{i:03d}.{ext}")
            n += 1
    return n


def png_claiming(width, height):
    """A small PNG file whose header declares ``width`` x ``height`` pixels (grey) and
    whose data is a few bytes: a decompression bomb's header, without the bomb."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def truncated_jpeg(size=(40, 40)):
    """The first half of a valid JPEG."""
    from PIL import Image

    buf = io.BytesIO()
    pixels = np.random.default_rng(1).integers(0, 256, size + (3,), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    return data[:len(data) // 2]
