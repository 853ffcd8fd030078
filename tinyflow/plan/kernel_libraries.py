"""What a board's optimized kernel library allocates beyond TFLM's reference kernels.

- ESP-NN (espressif/esp-tflite-micro 1.4.0 with espressif/esp-nn 1.2.3): CONV_2D, DEPTHWISE_CONV_2D and
  SOFTMAX request scratch buffers (kernels/esp_nn/{conv,depthwise_conv,softmax}.cc calling
  esp_nn_get_*_scratch_size). On the ESP32-S3 the conv/depthwise sizes come from the vector-unit kernels
  (esp-nn src/convolution/esp_nn_conv_esp32s3.c, esp_nn_depthwise_conv_s8_esp32s3.c); on other chips
  (ESP32, ESP32-C3) the generic C kernels need none. Their OpData gains an ``int buffer_idx``.
- CMSIS-NN (ARM-software/CMSIS-NN 4ab83cc as pinned by tflite-micro, Cortex-M4 with DSP, GCC):
  conv, depthwise and average-pool scratch (arm_*_get_buffer_size*), bigger FC and pooling OpData.

These formulas were checked against the libraries' own C size functions compiled on the host (thousands
of shapes, no mismatch); they change between library versions (esp-nn 1.1.2 asked for far more on
some shapes), which is why the versions are part of the plan's label.
"""

from __future__ import annotations

from .kernels import Event, OpView

ESPNN_VERSION = "esp-tflite-micro 1.4.0 + esp-nn 1.2.3"
CMSIS_VERSION = "CMSIS-NN 4ab83cc (Cortex-M4, DSP, GCC)"


def library_label(kernel_library: str, mcu: str) -> str:
    if kernel_library == "esp-nn":
        return f"ESP-NN ({'ESP32-S3 vector kernels' if mcu == 'esp32s3' else 'generic C kernels'}; {ESPNN_VERSION})"
    if kernel_library == "cmsis-nn":
        return f"CMSIS-NN ({CMSIS_VERSION})"
    return "TFLM reference kernels"


def _a(x: int, n: int) -> int:
    return (x + n - 1) // n * n


def _padding(v: OpView) -> tuple[int, int]:
    """TFLM's ComputePaddingHeightWidth: (pad_w, pad_h), the odd remainder dropped."""
    inp, out, f = v.inp(0), v.outs[0], v.inp(1)
    fh, fw = f.shape[1], f.shape[2]  # filters are [Cout, H, W, Cin] (conv) or [1, H, W, C] (depthwise)
    o = v.opts

    def pad(in_size: int, out_size: int, filt: int, stride: int, dil: int) -> int:
        eff = (filt - 1) * dil + 1
        return max(0, (out_size - 1) * stride + eff - in_size) // 2

    return (pad(inp.shape[2], out.shape[2], fw, o.get("strideW", 1), o.get("dilationWFactor", 1)),
            pad(inp.shape[1], out.shape[1], fh, o.get("strideH", 1), o.get("dilationHFactor", 1)))


def _espnn_s3_conv(v: OpView) -> int:
    inp, out, f = v.inp(0), v.outs[0], v.inp(1)
    in_h, in_w, c = inp.shape[1], inp.shape[2], inp.shape[3]
    out_h, out_w, cout = out.shape[1], out.shape[2], out.shape[3]
    fh, fw = f.shape[1], f.shape[2]
    sw, sh = v.opts.get("strideW", 1), v.opts.get("strideH", 1)
    pw, ph = _padding(v)
    a8 = _a(c, 8)
    if fw == 1 and fh == 1 and pw == 0 and ph == 0 and sw == 1 and sh == 1:
        return (in_w * in_h * a8 if c % 8 else 0) + a8 * cout + (0 if in_w * in_h < 8 else 16 * a8) + 64
    row, window = fw * c, fw * fh * c
    if row < 16 and window >= 16:  # im2col path, e.g. 3x3 over 3 channels
        wla = _a(window, 16)
        return 4 * cout + 16 + cout * wla + 16 + wla + 64
    pad_r = max(0, out_w * sw + fw - 1 - in_w)
    pad_b = max(0, out_h * sh + fh - 1 - in_h)
    return (((in_w + 2 * pw) * (in_h + 2 * ph) * c) if (pw or ph) else 0) + fw * fh * _a(c, 16) * cout \
        + _a(row, 16) * fh * cout + (((in_w + pad_r) * (in_h + pad_b) * c) if (pad_r or pad_b) else 0) + 64 + 4 * cout


def _espnn_s3_depthwise(v: OpView) -> int:
    inp, out, f = v.inp(0), v.outs[0], v.inp(1)
    in_h, in_w, c = inp.shape[1], inp.shape[2], inp.shape[3]
    out_h, out_w = out.shape[1], out.shape[2]
    fh, fw = f.shape[1], f.shape[2]
    mult = v.opts.get("depthMultiplier", 1)
    sw, sh = v.opts.get("strideW", 1), v.opts.get("strideH", 1)
    pw, ph = _padding(v)
    fsz = fw * fh * c * mult
    if mult == 1 and c % 8 == 0:
        if fw == 3 and fh == 3:
            if c % 16 == 0:
                ppw, pph = (2 * pw, 2 * ph) if (pw or ph) else (out_w * sw + 2 - in_w, out_h * sh + 2 - in_h)
                if ppw or pph:
                    full = (in_w + ppw) * (in_h + pph) * c
                    return fsz + full + 16 if full <= 40 * 1024 else fsz + (in_w + ppw) * 3 * c + 16
                return fsz + 16
            if c >= 12:
                nc = _a(c, 16)
                tpw = 2 * pw + max(0, out_w * sw + 2 - in_w)
                tph = 2 * ph + max(0, out_h * sh + 2 - in_h)
                return 9 * nc + (in_w + tpw) * (in_h + tph) * nc + out_w * out_h * nc + 64
            return 2 * (fsz + in_w * in_h * c) + 32
        s16 = 2 * (fsz + in_w * in_h * c)
        return s16 + 32 if s16 <= 48 * 1024 else 2 * fsz + 2 * in_w * fh * c + 32
    if mult == 1 and c > 3:
        pc = _a(c, 8)
        in_start = _a(2 * fw * fh * pc, 16)
        out_start = _a(in_start + 2 * in_w * in_h * pc, 16)
        bias_start = _a(out_start + out_w * out_h * pc, 16)
        return bias_start + 12 * pc + 16
    if mult % 4 == 0:
        return 2 * (fsz + in_w * in_h * c) + 32
    return 32


# Init's OpData on a 32-bit MCU where the library's kernel differs from the reference one.
_ESPNN_OPDATA = {"CONV_2D": 60, "DEPTHWISE_CONV_2D": 60,  # NodeData {OpDataConv; int buffer_idx}
                 "SOFTMAX": 64}  # NodeData {SoftmaxParams; int buffer_idx}, 8-aligned
_CMSIS_OPDATA = {"CONV_2D": 60, "DEPTHWISE_CONV_2D": 60, "SOFTMAX": 64, "FULLY_CONNECTED": 72,
                 "AVERAGE_POOL_2D": 36, "MAX_POOL_2D": 36}


def _espnn_scratch(v: OpView, s3: bool) -> list[Event]:
    name, inp = v.name, v.inp(0)
    int8_in = inp is not None and inp.dtype == "INT8"
    if name == "CONV_2D" and int8_in and s3:
        return [("S", _espnn_s3_conv(v))]
    if name == "DEPTHWISE_CONV_2D" and int8_in and s3:
        return [("S", _espnn_s3_depthwise(v))]
    if name == "SOFTMAX" and int8_in and v.outs[0].dtype == "INT8":
        # esp-nn sizes it from dims[1]: right for [N, C] inputs, too small for [1, 1, 1, C] (an esp-nn bug)
        return [("S", 4 * inp.shape[1])]
    return []


def _cmsis_scratch(v: OpView) -> list[Event]:
    name, inp = v.name, v.inp(0)
    if inp is None or inp.dtype != "INT8":
        return []
    if name == "CONV_2D":
        f = v.inp(1)
        fh, fw, c = f.shape[1], f.shape[2], inp.shape[3]
        pw, ph = _padding(v)
        dil = (v.opts.get("dilationWFactor", 1), v.opts.get("dilationHFactor", 1))
        if pw == 0 and ph == 0 and fw == fh == 1 and dil == (1, 1) and c == f.shape[3]:
            return []
        return [("S", 4 * _a(fw * fh * c, 4))]
    if name == "DEPTHWISE_CONV_2D":
        f = v.inp(1)
        fh, fw, c, cout = f.shape[1], f.shape[2], inp.shape[3], v.outs[0].shape[3]
        pw, ph = _padding(v)
        dil = (v.opts.get("dilationWFactor", 1), v.opts.get("dilationHFactor", 1))
        if c == cout and inp.shape[0] == 1 and dil == (1, 1):
            if fw == fh == 3 and pw <= 1 and ph <= 1:
                return []
            return [("S", 2 * c * fw * fh)]
        return []
    if name == "AVERAGE_POOL_2D":
        return [("S", 4 * inp.shape[-1])]
    if name == "FULLY_CONNECTED":
        out, f = v.outs[0], v.inp(1)
        depth = f.shape[-1]
        if len(out.shape) > 2 and depth % 4 == 0 and f.channels <= 1:
            return [("S", 8 * out.shape[-1])]
    return []


def adjust_init(v: OpView, kernel_library: str, events: list[Event]) -> list[Event]:
    """The reference kernel's Init events, with the library kernel's OpData size where it differs."""
    table = {"esp-nn": _ESPNN_OPDATA, "cmsis-nn": _CMSIS_OPDATA}.get(kernel_library, {})
    if v.name in table and events:
        return [("P", table[v.name]), *events[1:]]
    return events


def extra_prepare(v: OpView, kernel_library: str, mcu: str) -> list[Event]:
    """Scratch requests the library's kernel makes in Prepare beyond the reference kernel's."""
    if kernel_library == "esp-nn":
        return _espnn_scratch(v, s3=mcu == "esp32s3")
    if kernel_library == "cmsis-nn":
        return _cmsis_scratch(v)
    return []
