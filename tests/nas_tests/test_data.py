import torch

from nas.data import Embedded, FashionMNIST


def test_embedded_subset_is_balanced_real_fashion_mnist(shared_data, tmp_path, monkeypatch):
    import numpy as np

    from nas.data import EMBEDDED_FILE

    embedded = Embedded().load()
    assert embedded.images.shape == (6000, 1, 28, 28) and embedded.images.dtype == torch.uint8
    assert torch.bincount(embedded.labels).tolist() == [600] * 10
    monkeypatch.chdir(tmp_path)  # the .gz mirror is extracted under ./.nas_cache
    full = FashionMNIST(str(shared_data)).load()
    assert full.images.shape == (60000, 1, 28, 28)
    with np.load(EMBEDDED_FILE) as f:
        source = torch.from_numpy(f["source_indices"].astype("int64"))
    assert torch.equal(full.images[source], embedded.images)
    assert torch.equal(full.labels[source], embedded.labels)
    assert (EMBEDDED_FILE.parent / "LICENSE-fashion-mnist.txt").exists()


def test_split_is_stratified_disjoint_and_seeded():
    data = Embedded().load()
    train, val = data.split(0.2, seed=0)
    assert len(set(train.tolist()) & set(val.tolist())) == 0
    assert len(train) + len(val) == 6000
    assert torch.bincount(data.labels[val]).tolist() == [120] * 10
    assert torch.equal(data.split(0.2, seed=0)[1], val)
    assert not torch.equal(data.split(0.2, seed=1)[1], val)
    assert data.fingerprint() == Embedded().load().fingerprint()


def test_imagefolder_reads_real_image_files(tmp_path):
    from PIL import Image

    from nas.image_folder import ImageFolder

    for c, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        (tmp_path / f"class{c}").mkdir()
        for i in range(3):
            Image.new("RGB", (40, 30), colour).save(tmp_path / f"class{c}" / f"{i}.png")
    data = ImageFolder(str(tmp_path), image_size=16).load()
    assert data.images.shape == (6, 3, 16, 16) and data.num_classes == 2
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.images[0, 0].float().mean() == 255 and data.images[3, 2].float().mean() == 255
