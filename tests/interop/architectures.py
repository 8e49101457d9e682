"""Small but faithful PyTorch versions of well-known vision architectures, written from
their papers for the import tests (``tests/interop/test_architectures.py``) and the zoo
benchmark (``python -m benchmarks.zoo``).

Each ``build_<name>(num_classes=10, seed=0)`` returns a module in eval mode whose widths
and depths are reduced so that a float64 Jacobian takes seconds, while every
architectural feature of the paper stays: the operators and the way public code writes
them (hard-swish as ``x * relu6(x + 3) / 6``, the channel split by ``chunk``, the patch
embedding by ``reshape``/``permute``, shifted windows by ``torch.roll``, ...).
Batch normalisation gets random running statistics and affine parameters, so that its
inference form is not the identity. :data:`ARCHITECTURES` maps each name to its builder
and per-example input shape.

All tensors keep the batch axis first and separate: where a reference implementation
folds windows or heads into the batch axis (Swin's ``view(-1, ws * ws, C)``), these keep
them as axes of their own.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F


def randomize_batchnorm(model, seed=0):
    """Give every BatchNorm random running statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(0.75 + 0.5 * torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
    return model


def finish(model, seed):
    """Random batch-norm statistics, eval mode."""
    return randomize_batchnorm(model, seed).eval()


def conv_bn(cin, cout, k, stride=1, groups=1, act=nn.ReLU):
    """Conv (same padding, no bias), BatchNorm, then ``act`` (None: no activation)."""
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- ResNet-18
class BasicBlock(nn.Module):
    """He et al. (2016): two 3x3 convolutions and an identity or 1x1 projection shortcut."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18: a stem, four stages of two basic blocks, global average pool, FC."""

    def __init__(self, widths=(4, 8, 16, 32), num_classes=10):
        super().__init__()
        self.stem = conv_bn(3, widths[0], 3)
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            for j in range(2):
                blocks.append(BasicBlock(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.pool(self.layers(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


def build_resnet18(num_classes=10, seed=0):
    torch.manual_seed(seed)
    return finish(ResNet18(num_classes=num_classes), seed)


# --------------------------------------------------------------------------- MobileNetV2
class InvertedResidual(nn.Module):
    """Sandler et al. (2018): 1x1 expansion, 3x3 depthwise, linear 1x1 projection; a
    residual connection when the shape is kept."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [conv_bn(cin, hidden, 1, act=nn.ReLU6)]
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   conv_bn(hidden, cout, 1, act=None)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    # (expansion t, output channels c, repeats n, first stride s), as the paper's Table 2
    CONFIG = ((1, 8, 1, 1), (6, 12, 2, 2), (6, 16, 2, 2))

    def __init__(self, num_classes=10, last=32):
        super().__init__()
        layers, cin = [conv_bn(3, 8, 3, 2, act=nn.ReLU6)], 8
        for t, c, n, s in self.CONFIG:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def build_mobilenetv2(num_classes=10, seed=0):
    torch.manual_seed(seed)
    return finish(MobileNetV2(num_classes), seed)


# --------------------------------------------------------------------------- MobileNetV3
class HardSigmoid(nn.Module):
    def forward(self, x):
        return F.relu6(x + 3.0) / 6.0


class HardSwish(nn.Module):
    def forward(self, x):
        return x * F.relu6(x + 3.0) / 6.0


class SqueezeExcite(nn.Module):
    """Hu et al. (2018): global pool, bottleneck MLP (1x1 convs), a gate multiplied in."""

    def __init__(self, channels, squeeze, gate=HardSigmoid, act=nn.ReLU):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.act = act()
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.gate = gate()

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = self.gate(self.expand(self.act(self.reduce(s))))
        return x * s


class V3Block(nn.Module):
    """Howard et al. (2019): expansion, depthwise k x k, optional SE, linear projection."""

    def __init__(self, cin, k, hidden, cout, se, act, stride):
        super().__init__()
        layers = [] if hidden == cin else [conv_bn(cin, hidden, 1, act=act)]
        layers.append(conv_bn(hidden, hidden, k, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden, max(hidden // 4, 2)))
        layers.append(conv_bn(hidden, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV3(nn.Module):
    # (kernel, expansion size, output, SE, activation, stride), as the paper's Table 2
    CONFIG = ((3, 8, 8, True, nn.ReLU, 1), (3, 24, 12, False, nn.ReLU, 2),
              (3, 28, 12, False, nn.ReLU, 1), (5, 32, 16, True, HardSwish, 2),
              (5, 48, 16, True, HardSwish, 1))

    def __init__(self, num_classes=10, last=48, head=64):
        super().__init__()
        layers, cin = [conv_bn(3, 8, 3, 2, act=HardSwish)], 8
        for k, hidden, cout, se, act, s in self.CONFIG:
            layers.append(V3Block(cin, k, hidden, cout, se, act, s))
            cin = cout
        layers.append(conv_bn(cin, last, 1, act=HardSwish))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(last, head), HardSwish(), nn.Dropout(0.2),
                                        nn.Linear(head, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def build_mobilenetv3(num_classes=10, seed=0):
    torch.manual_seed(seed)
    return finish(MobileNetV3(num_classes), seed)


# --------------------------------------------------------------------------- EfficientNet-B0
class MBConv(nn.Module):
    """Tan & Le (2019): MBConv with SiLU, squeeze-and-excitation (reduction 4 of the
    block's input channels, sigmoid gate), and a residual when the shape is kept (drop
    connect is the identity in eval mode)."""

    def __init__(self, cin, cout, k, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [conv_bn(cin, hidden, 1, act=nn.SiLU)]
        layers += [conv_bn(hidden, hidden, k, stride, groups=hidden, act=nn.SiLU),
                   SqueezeExcite(hidden, max(cin // 4, 1), gate=nn.Sigmoid, act=nn.SiLU),
                   conv_bn(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class EfficientNetB0(nn.Module):
    # (expansion, kernel, stride, output channels, repeats): the paper's Table 1, reduced
    CONFIG = ((1, 3, 1, 8, 1), (6, 3, 2, 12, 2), (6, 5, 2, 16, 1), (6, 3, 1, 16, 1))

    def __init__(self, num_classes=10, head=48):
        super().__init__()
        layers, cin = [conv_bn(3, 8, 3, 2, act=nn.SiLU)], 8
        for e, k, s, c, n in self.CONFIG:
            for i in range(n):
                layers.append(MBConv(cin, c, k, s if i == 0 else 1, e))
                cin = c
        layers.append(conv_bn(cin, head, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(head, num_classes)

    def forward(self, x):
        x = torch.flatten(self.pool(self.features(x)), 1)
        return self.fc(self.dropout(x))


def build_efficientnet_b0(num_classes=10, seed=0):
    torch.manual_seed(seed)
    return finish(EfficientNetB0(num_classes), seed)


# --------------------------------------------------------------------------- ShuffleNetV2
def channel_shuffle(x, groups):
    n, c, h, w = x.shape
    x = x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(n, c, h, w)


class ShuffleUnit(nn.Module):
    """Ma et al. (2018): stride 1 splits the channels in two halves (``chunk``) and
    transforms one; stride 2 transforms both copies of the input; then concatenation and
    channel shuffle."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride = stride
        half = cout // 2
        branch_in = cin if stride == 2 else half
        self.branch2 = nn.Sequential(conv_bn(branch_in, half, 1),
                                     conv_bn(half, half, 3, stride, groups=half, act=None),
                                     conv_bn(half, half, 1))
        if stride == 2:
            self.branch1 = nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin, act=None),
                                         conv_bn(cin, half, 1))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, num_classes=10, widths=(8, 16, 32), repeats=(2, 2), last=48):
        super().__init__()
        self.stem = conv_bn(3, widths[0], 3)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        units, cin = [], widths[0]
        for w, n in zip(widths[1:], repeats):
            units += [ShuffleUnit(cin, w, 2)] + [ShuffleUnit(w, w, 1) for _ in range(n - 1)]
            cin = w
        self.stages = nn.Sequential(*units)
        self.conv5 = conv_bn(cin, last, 1)
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x):
        x = self.conv5(self.stages(self.maxpool(self.stem(x))))
        return self.fc(x.mean([2, 3]))


def build_shufflenetv2(num_classes=10, seed=0):
    torch.manual_seed(seed)
    return finish(ShuffleNetV2(num_classes), seed)


# --------------------------------------------------------------------------- DenseNet
class DenseLayer(nn.Module):
    """Huang et al. (2017), DenseNet-BC: BN-ReLU-1x1 conv (4k), BN-ReLU-3x3 conv (k); the
    new features are concatenated to the input."""

    def __init__(self, cin, growth):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv1(F.relu(self.bn1(x)))
        y = self.conv2(F.relu(self.bn2(y)))
        return torch.cat([x, y], 1)


class Transition(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False),
                         nn.AvgPool2d(2, 2))


class DenseNet(nn.Module):
    def __init__(self, num_classes=10, growth=4, blocks=(3, 3), compression=0.5):
        super().__init__()
        c = 2 * growth
        layers = [nn.Conv2d(3, c, 3, padding=1, bias=False)]
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(DenseLayer(c, growth))
                c += growth
            if i < len(blocks) - 1:
                layers.append(Transition(c, int(c * compression)))
                c = int(c * compression)
        layers += [nn.BatchNorm2d(c), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.fc(torch.flatten(x, 1))


def build_densenet(num_classes=10, seed=0):
    torch.manual_seed(seed)
    return finish(DenseNet(num_classes), seed)


# --------------------------------------------------------------------------- GoogLeNet
class Inception(nn.Module):
    """Szegedy et al. (2015): 1x1; 1x1 then 3x3; 1x1 then 5x5; 3x3 max pool then 1x1;
    concatenated along the channels (each conv followed by batch norm and ReLU, as in
    the batch-normalised version)."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, cp):
        super().__init__()
        self.b1 = conv_bn(cin, c1, 1)
        self.b2 = nn.Sequential(conv_bn(cin, c3r, 1), conv_bn(c3r, c3, 3))
        self.b3 = nn.Sequential(conv_bn(cin, c5r, 1), conv_bn(c5r, c5, 5))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn(cin, cp, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 8, 3), nn.MaxPool2d(3, 2, 1, ceil_mode=True))
        self.inc3a = Inception(8, 4, 4, 8, 2, 4, 4)     # -> 20
        self.inc3b = Inception(20, 8, 8, 8, 2, 4, 4)    # -> 24
        self.pool3 = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.inc4a = Inception(24, 8, 6, 12, 2, 4, 8)   # -> 32
        self.dropout = nn.Dropout(0.4)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.pool3(self.inc3b(self.inc3a(self.stem(x))))
        x = F.adaptive_avg_pool2d(self.inc4a(x), 1)
        return self.fc(self.dropout(torch.flatten(x, 1)))


def build_googlenet(num_classes=10, seed=0):
    torch.manual_seed(seed)
    return finish(GoogLeNet(num_classes), seed)


# --------------------------------------------------------------------------- U-Net
class DoubleConv(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(conv_bn(cin, cout, 3), conv_bn(cout, cout, 3))


class Up(nn.Module):
    """Bilinear x2 upsampling (``nn.Upsample`` or ``F.interpolate``), concatenation with
    the skip connection, double convolution."""

    def __init__(self, cin, cout, functional):
        super().__init__()
        self.functional = functional
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConv(cin, cout)

    def forward(self, x, skip):
        if self.functional:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        else:
            x = self.up(x)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """Ronneberger et al. (2015), with same-padding convolutions and bilinear upsampling
    instead of transposed convolutions (as common PyTorch versions do); a per-pixel
    1x1 convolution maps to the classes."""

    def __init__(self, cin=3, classes=2, widths=(4, 8, 16)):
        super().__init__()
        self.inc = DoubleConv(cin, widths[0])
        self.downs = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), DoubleConv(a, b))
                                   for a, b in zip(widths, widths[1:]))
        self.ups = nn.ModuleList(Up(b + a, a, functional=i % 2 == 0)
                                 for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])))
        self.outc = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x):
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in reversed(self.ups):
            x = up(x, skips.pop())
        return self.outc(x)


def build_unet(num_classes=2, seed=0):
    torch.manual_seed(seed)
    return finish(UNet(classes=num_classes), seed)


# --------------------------------------------------------------------------- FSRCNN
class FSRCNN(nn.Module):
    """Dong et al. (2016): feature extraction 5x5 (d), shrinking 1x1 (s), m mapping 3x3
    layers, expanding 1x1 (d), each followed by a per-channel PReLU; a 9x9 transposed
    convolution of stride ``scale`` upsamples."""

    def __init__(self, scale=2, d=8, s=4, m=2, channels=1):
        super().__init__()
        layers = [nn.Conv2d(channels, d, 5, padding=2), nn.PReLU(d),
                  nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(d, channels, 9, stride=scale, padding=4,
                                         output_padding=scale - 1)
        with torch.no_grad():
            for p in self.body:
                if isinstance(p, nn.PReLU):
                    p.weight.uniform_(0.05, 0.5)

    def forward(self, x):
        return self.deconv(self.body(x))


def build_fsrcnn(num_classes=None, seed=0):
    torch.manual_seed(seed)
    return FSRCNN().eval()


# --------------------------------------------------------------------------- ViT
class Attention(nn.Module):
    """Multi-head self-attention over tokens (N, L, dim): a fused qkv projection split by
    ``chunk``, heads by ``reshape``/``permute``, ``softmax(q k^T / sqrt(d)) v`` with two
    products of activations, or PyTorch's ``scaled_dot_product_attention``."""

    def __init__(self, dim, heads, head_dim, sdpa=False):
        super().__init__()
        self.heads, self.head_dim, self.sdpa = heads, head_dim, sdpa
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.proj = nn.Linear(heads * head_dim, dim)

    def forward(self, x):
        n, length, _ = x.shape
        q, k, v = (t.reshape(n, length, self.heads, self.head_dim).permute(0, 2, 1, 3)
                   for t in self.qkv(x).chunk(3, dim=-1))
        if self.sdpa:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            dots = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            out = torch.matmul(dots.softmax(dim=-1), v)
        out = out.transpose(1, 2).reshape(n, length, self.heads * self.head_dim)
        return self.proj(out)


class TransformerBlock(nn.Module):
    """Pre-norm: ``x + attn(LN(x))``, then ``x + MLP(LN(x))`` with GELU."""

    def __init__(self, dim, heads, head_dim, mlp, sdpa=False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, head_dim, sdpa)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Dosovitskiy et al. (2021): patches rearranged into tokens, a linear embedding, a
    class token concatenated in front, a learned positional embedding added, pre-norm
    transformer blocks, the class token's final LayerNorm to the head."""

    def __init__(self, image=16, patch=4, channels=3, dim=16, depth=2, heads=2,
                 head_dim=8, mlp=32, num_classes=10, sdpa=False):
        super().__init__()
        self.patch = patch
        tokens = (image // patch) ** 2
        self.embed = nn.Linear(patch * patch * channels, dim)
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(0.02 * torch.randn(1, tokens + 1, dim))
        self.blocks = nn.Sequential(*(TransformerBlock(dim, heads, head_dim, mlp, sdpa)
                                      for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def patches(self, x):
        """(N, C, H, W) -> (N, H/p * W/p, p * p * C), "b c (h p1) (w p2) -> b (h w) (p1 p2 c)"."""
        n, c, h, w = x.shape
        p = self.patch
        x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(n, (h // p) * (w // p), p * p * c)

    def forward(self, x):
        x = self.embed(self.patches(x))
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + self.pos_embedding
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def build_vit(num_classes=10, seed=0, sdpa=False):
    torch.manual_seed(seed)
    return ViT(num_classes=num_classes, sdpa=sdpa).eval()


def build_vit_sdpa(num_classes=10, seed=0):
    return build_vit(num_classes, seed, sdpa=True)


# --------------------------------------------------------------------------- MLP-Mixer
class MixerBlock(nn.Module):
    """Tolstikhin et al. (2021): token mixing (an MLP across patches, on the transposed
    table) and channel mixing, each pre-norm with a skip connection."""

    def __init__(self, tokens, dim, token_mlp, channel_mlp):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mix = nn.Sequential(nn.Linear(tokens, token_mlp), nn.GELU(),
                                       nn.Linear(token_mlp, tokens))
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mix = nn.Sequential(nn.Linear(dim, channel_mlp), nn.GELU(),
                                         nn.Linear(channel_mlp, dim))

    def forward(self, x):
        x = x + self.token_mix(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mix(self.norm2(x))


class MLPMixer(nn.Module):
    def __init__(self, image=16, patch=4, channels=3, dim=16, depth=2, token_mlp=8,
                 channel_mlp=32, num_classes=10):
        super().__init__()
        tokens = (image // patch) ** 2
        self.stem = nn.Conv2d(channels, dim, patch, stride=patch)   # per-patch linear
        self.blocks = nn.Sequential(*(MixerBlock(tokens, dim, token_mlp, channel_mlp)
                                      for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)       # (N, tokens, dim)
        x = self.norm(self.blocks(x))
        return self.head(x.mean(dim=1))


def build_mlp_mixer(num_classes=10, seed=0):
    torch.manual_seed(seed)
    return MLPMixer(num_classes=num_classes).eval()


# --------------------------------------------------------------------------- ConvNeXt
class LayerNorm2d(nn.Module):
    """ConvNeXt's channels-first LayerNorm, written out with mean, pow and sqrt."""

    def __init__(self, channels, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(channels))
        self.bias = nn.Parameter(0.1 * torch.randn(channels))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    """Liu et al. (2022): depthwise 7x7, channels-last LayerNorm (after ``permute``),
    inverted-bottleneck MLP with GELU, layer scale ``gamma * x``, residual."""

    def __init__(self, dim, layer_scale=0.5):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale * (1.0 + 0.1 * torch.randn(dim)))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)             # (N, H, W, C)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, num_classes=10, dims=(8, 16), depths=(1, 1)):
        super().__init__()
        stages = [nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), LayerNorm2d(dims[0]))]
        for i, (d, n) in enumerate(zip(dims, depths)):
            if i > 0:
                stages.append(nn.Sequential(LayerNorm2d(dims[i - 1]),
                                            nn.Conv2d(dims[i - 1], d, 2, stride=2)))
            stages += [ConvNeXtBlock(d) for _ in range(n)]
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        x = self.stages(x).mean([-2, -1])
        return self.head(self.norm(x))


def build_convnext(num_classes=10, seed=0):
    torch.manual_seed(seed)
    return ConvNeXt(num_classes).eval()


# --------------------------------------------------------------------------- Swin
def window_partition(x, ws):
    """(N, H, W, C) -> (N, windows, ws * ws, C)."""
    n, h, w, c = x.shape
    x = x.view(n, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, (h // ws) * (w // ws), ws * ws, c)


def window_reverse(x, ws, h, w):
    """(N, windows, ws * ws, C) -> (N, H, W, C)."""
    n, c = x.shape[0], x.shape[-1]
    x = x.view(n, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h, w, c)


def relative_position_index(ws):
    """(ws^2, ws^2) index into the ((2 ws - 1)^2, heads) bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij"))
    coords = coords.flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


def shift_mask(h, w, ws, shift):
    """(windows, ws^2, ws^2) additive mask: -100 between tokens from different regions
    of the cyclically shifted map."""
    region = torch.zeros(1, h, w, 1)
    cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for k, (a, b) in enumerate((a, b) for a in cuts for b in cuts):
        region[:, a, b, :] = k
    ids = window_partition(region, ws).squeeze(0).squeeze(-1)      # (windows, ws^2)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


class WindowAttention(nn.Module):
    """Liu et al. (2021): attention inside each window, plus a relative position bias
    read from a learned table by a constant index."""

    def __init__(self, dim, ws, heads):
        super().__init__()
        self.heads, self.ws = heads, ws
        self.head_dim = dim // heads
        self.table = nn.Parameter(0.02 * torch.randn((2 * ws - 1) ** 2, heads))
        self.register_buffer("index", relative_position_index(ws))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        n, nw, t, c = x.shape
        qkv = self.qkv(x).reshape(n, nw, t, 3, self.heads, self.head_dim)
        qkv = qkv.permute(0, 1, 3, 4, 2, 5)                # (N, windows, 3, heads, t, d)
        q, k, v = qkv.unbind(2)
        attn = (q / math.sqrt(self.head_dim)) @ k.transpose(-2, -1)
        bias = self.table[self.index.view(-1)].view(t, t, self.heads).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            attn = attn + mask.unsqueeze(1)                # (windows, 1, t, t)
        out = (attn.softmax(dim=-1) @ v).transpose(2, 3).reshape(n, nw, t, c)
        return self.proj(out)


class SwinBlock(nn.Module):
    """(Shifted) window attention and an MLP, pre-norm, on tokens (N, H * W, C)."""

    def __init__(self, dim, resolution, heads, ws, shift, mlp=2):
        super().__init__()
        self.h = self.w = resolution
        if resolution <= ws:                               # one window: nothing to shift
            ws, shift = resolution, 0
        self.ws, self.shift = ws, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, ws, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp * dim), nn.GELU(),
                                 nn.Linear(mlp * dim, dim))
        self.register_buffer("mask", shift_mask(self.h, self.w, ws, shift) if shift else None)

    def forward(self, x):
        n, _, c = x.shape
        y = self.norm1(x).view(n, self.h, self.w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.ws), self.mask)
        y = window_reverse(y, self.ws, self.h, self.w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(n, self.h * self.w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbours concatenated (strided slices), LayerNorm, linear 4C -> 2C."""

    def __init__(self, dim, resolution):
        super().__init__()
        self.r = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        n, _, c = x.shape
        x = x.view(n, self.r, self.r, c)
        x = torch.cat([x[:, 0::2, 0::2, :], x[:, 1::2, 0::2, :], x[:, 0::2, 1::2, :],
                       x[:, 1::2, 1::2, :]], -1)
        return self.reduction(self.norm(x.view(n, -1, 4 * c)))


class Swin(nn.Module):
    def __init__(self, image=16, patch=2, dim=8, depths=(2, 2), heads=(2, 4), ws=4,
                 num_classes=10):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.embed_norm = nn.LayerNorm(dim)
        r, layers = image // patch, []
        for i, (n, h) in enumerate(zip(depths, heads)):
            if i > 0:
                layers.append(PatchMerging(dim, r))
                dim, r = 2 * dim, r // 2
            layers += [SwinBlock(dim, r, h, ws, 0 if j % 2 == 0 else ws // 2)
                       for j in range(n)]
        self.layers = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.embed_norm(self.embed(x).flatten(2).transpose(1, 2))
        x = self.norm(self.layers(x))
        return self.head(x.mean(dim=1))


def build_swin(num_classes=10, seed=0):
    torch.manual_seed(seed)
    model = Swin(num_classes=num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, WindowAttention):
                m.table.normal_(0.0, 0.5)      # a bias that matters
    return model.eval()


# --------------------------------------------------------------------------- BoTNet
class RelativeMHSA(nn.Module):
    """Srinivas et al. (2021), the MHSA of a bottleneck transformer: 1x1 projections to
    q, k, v (one conv, split by ``chunk``), logits ``q^T k + q^T r`` where ``r_ij`` is
    the sum of learned height and width embeddings of the offsets between positions i
    and j (relative position embeddings), softmax, weighted sum of v."""

    def __init__(self, dim, size, heads):
        super().__init__()
        self.heads, self.size, self.d = heads, size, dim // heads
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=False)
        self.rel_h = nn.Parameter(0.3 * torch.randn(2 * size - 1, self.d))
        self.rel_w = nn.Parameter(0.3 * torch.randn(2 * size - 1, self.d))
        pos = torch.arange(size * size)
        hi, wi = pos // size, pos % size
        # flat index into (positions, 2 size - 1) of offset (j - i) + size - 1 per (i, j)
        row = pos[:, None] * (2 * size - 1)
        self.register_buffer("index_h", (row + hi[None, :] - hi[:, None] + size - 1).flatten())
        self.register_buffer("index_w", (row + wi[None, :] - wi[:, None] + size - 1).flatten())

    def position_logits(self, q, table, index):
        """(N, heads, P, d) @ (d, 2 size - 1), gathered per (i, j) offset: (N, heads, P, P)."""
        n, h, p, _ = q.shape
        qr = torch.matmul(q, table.t()).reshape(n, h, p * (2 * self.size - 1))
        return qr[:, :, index].reshape(n, h, p, p)

    def forward(self, x):
        n, c, hh, ww = x.shape
        q, k, v = (t.reshape(n, self.heads, self.d, hh * ww).transpose(-1, -2)
                   for t in self.qkv(x).chunk(3, dim=1))        # (N, heads, P, d)
        q = q * self.d ** -0.5
        logits = torch.matmul(q, k.transpose(-1, -2))
        logits = logits + self.position_logits(q, self.rel_h, self.index_h) \
            + self.position_logits(q, self.rel_w, self.index_w)
        out = torch.matmul(logits.softmax(dim=-1), v)           # (N, heads, P, d)
        return out.transpose(-1, -2).reshape(n, c, hh, ww)


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1, 3x3 or MHSA, 1x1 with expansion 4). In the BoT block the
    3x3 convolution becomes MHSA, followed by 2x2 average pooling when it strides."""

    def __init__(self, cin, mid, stride, mhsa_size=None, heads=2):
        super().__init__()
        cout = 4 * mid
        self.conv1 = conv_bn(cin, mid, 1)
        if mhsa_size is None:
            middle = [conv_bn(mid, mid, 3, stride)]
        else:
            middle = [RelativeMHSA(mid, mhsa_size, heads)]
            middle += [nn.AvgPool2d(2, 2)] if stride == 2 else []
            middle += [nn.BatchNorm2d(mid), nn.ReLU()]
        self.middle = nn.Sequential(*middle)
        self.conv3 = conv_bn(mid, cout, 1, act=None)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = conv_bn(cin, cout, 1, stride, act=None)

    def forward(self, x):
        return F.relu(self.conv3(self.middle(self.conv1(x))) + self.shortcut(x))


class BoTNet(nn.Module):
    """A ResNet whose last stage is bottleneck-transformer blocks (16x16 input: the
    stem and the conv stage at 8x8, MHSA first at 8x8, pooled to 4x4, then at 4x4)."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 8, 3, 2))
        self.stage = Bottleneck(8, 4, 1)
        self.bot = nn.Sequential(Bottleneck(16, 8, 2, mhsa_size=8),
                                 Bottleneck(32, 8, 1, mhsa_size=4))
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.bot(self.stage(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_botnet(num_classes=10, seed=0):
    torch.manual_seed(seed)
    return finish(BoTNet(num_classes), seed)


#: name -> (builder, per-example input shape)
ARCHITECTURES = {
    "resnet18": (build_resnet18, (3, 16, 16)),
    "mobilenetv2": (build_mobilenetv2, (3, 16, 16)),
    "mobilenetv3": (build_mobilenetv3, (3, 16, 16)),
    "efficientnet_b0": (build_efficientnet_b0, (3, 16, 16)),
    "shufflenetv2": (build_shufflenetv2, (3, 16, 16)),
    "densenet": (build_densenet, (3, 16, 16)),
    "googlenet": (build_googlenet, (3, 16, 16)),
    "unet": (build_unet, (3, 16, 16)),
    "fsrcnn": (build_fsrcnn, (1, 8, 8)),
    "vit": (build_vit, (3, 16, 16)),
    "vit_sdpa": (build_vit_sdpa, (3, 16, 16)),
    "mlp_mixer": (build_mlp_mixer, (3, 16, 16)),
    "convnext": (build_convnext, (3, 16, 16)),
    "swin": (build_swin, (3, 16, 16)),
    "botnet": (build_botnet, (3, 16, 16)),
}
