"""models.py — the project's models in PyTorch: the same layers and the same state_dict names
as the C models (trainer/nn/graph.h), so that a checkpoint of `imgset train` loads into them
with load_state_dict(strict=True), and PyTorch trains what `imgset train` trains.

    import imgset.models
    net = imgset.models.make_model("cnn-small", C=3, H=32, W=32, K=10)

Importing this module imports torch (imgset itself does not).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def stem_shrink(H, W):
    """(stride of the stem, 2x2 max-pools after it) that bring a large input to <= 64 per side,
    as the C graph builder does."""
    side = max(H, W)
    stride = 2 if side > 64 else 1
    side = (side + stride - 1) // stride
    pools = 0
    while side > 64:
        side //= 2
        pools += 1
    return stride, pools


class Mlp(nn.Module):
    """act: the hidden layers' activation (imgset train --activation), ReLU by default."""

    def __init__(self, C, H, W, K, act=F.relu):
        super().__init__()
        self.fc1 = nn.Linear(C * H * W, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, K)
        self.act = act

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


class CnnSmall(nn.Module):
    """act: the hidden layers' activation (imgset train --activation), ReLU by default."""

    def __init__(self, C, H, W, K, act=F.relu):
        super().__init__()
        self.conv1 = nn.Conv2d(C, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * (H // 4) * (W // 4), 128)
        self.fc2 = nn.Linear(128, K)
        self.act = act

    def forward(self, x):
        x = F.max_pool2d(self.act(self.conv1(x)), 2)
        x = F.max_pool2d(self.act(self.conv2(x)), 2)
        return self.fc2(self.act(self.fc1(torch.flatten(x, 1))))


class ConvBn(nn.Module):
    def __init__(self, cin, cout, k, stride, pad):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = ConvBn(cin, cout, 1, stride, 0) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


class ResNet8(nn.Module):
    def __init__(self, C, H, W, K):
        super().__init__()
        stride, self.pools = stem_shrink(H, W)
        self.stem = ConvBn(C, 16, 3, stride, 1)
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.layer3 = BasicBlock(32, 64, 2)
        self.fc = nn.Linear(64, K)

    def forward(self, x):
        x = F.relu(self.stem(x))
        for _ in range(self.pools):
            x = F.max_pool2d(x, 2)
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class BnConv(nn.Module):
    def __init__(self, cin, cout, k, pad):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, cout, k, padding=pad, bias=False)

    def forward(self, x):
        return self.conv(F.relu(self.bn(x)))


class DenseBlock(nn.Module):
    def __init__(self, cin, growth, layers):
        super().__init__()
        for i in range(layers):
            setattr(self, f"layer{i + 1}", BnConv(cin + i * growth, growth, 3, 1))
        self.layers = layers

    def forward(self, x):
        for i in range(self.layers):
            x = torch.cat([x, getattr(self, f"layer{i + 1}")(x)], 1)
        return x


class DenseNetTiny(nn.Module):
    def __init__(self, C, H, W, K, growth=12, layers=3):
        super().__init__()
        stride, self.pools = stem_shrink(H, W)
        self.stem = nn.Module()
        self.stem.conv = nn.Conv2d(C, 2 * growth, 3, stride=stride, padding=1, bias=False)
        c = 2 * growth
        self.block1 = DenseBlock(c, growth, layers)
        c += layers * growth
        self.trans1 = BnConv(c, c // 2, 1, 0)
        c //= 2
        self.block2 = DenseBlock(c, growth, layers)
        c += layers * growth
        self.trans2 = BnConv(c, c // 2, 1, 0)
        c //= 2
        self.block3 = DenseBlock(c, growth, layers)
        c += layers * growth
        self.final_bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, K)

    def forward(self, x):
        x = self.stem.conv(x)
        for _ in range(self.pools):
            x = F.max_pool2d(x, 2)
        x = F.avg_pool2d(self.trans1(self.block1(x)), 2)
        x = F.avg_pool2d(self.trans2(self.block2(x)), 2)
        x = F.relu(self.final_bn(self.block3(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


ARCHS = {"mlp": Mlp, "cnn-small": CnnSmall, "resnet8": ResNet8, "densenet-tiny": DenseNetTiny}


def make_model(name, C, H, W, K):
    """The model `name` ('mlp', 'cnn-small', 'resnet8', 'densenet-tiny') for C×H×W inputs
    and K classes; ValueError naming an unknown one."""
    if name not in ARCHS:
        raise ValueError("imgset.models: unknown model %r (%s)" % (name, ", ".join(ARCHS)))
    return ARCHS[name](C, H, W, K)
