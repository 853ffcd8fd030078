"""Rewrite a .tflite flatbuffer: edit the unpacked model object, pack it again, keep buffers 16-aligned."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .reader import tflite_schema


def unpack(data: bytes) -> Any:
    return tflite_schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def pack(model: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def metadata_name(meta: Any) -> str:
    """The name of an unpacked ``MetadataT`` (the object API gives bytes)."""
    return meta.name.decode(errors="replace") if isinstance(meta.name, bytes) else str(meta.name or "")


def rewrite(data: bytes, edit: Callable[[Any], None]) -> bytes:
    """``edit`` changes the unpacked ModelT in place; the result is packed and re-aligned."""
    model = unpack(data)
    edit(model)
    return align_buffers(pack(model))


def align_buffers(data: bytes) -> bytes:
    """Re-align the weight buffers to 16 bytes as the TFLite converter lays them out.

    The flatbuffers packer aligns a byte vector to 4 only; TFLM kernels read int32 biases and
    per-channel data in place, and an MCU without unaligned loads faults on them.
    """
    import tempfile
    from pathlib import Path

    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper as wrapper

    with tempfile.TemporaryDirectory(prefix="tinyflow-align-") as tmp:
        src, dst = Path(tmp) / "in.tflite", Path(tmp) / "out.tflite"
        src.write_bytes(data)
        wrapper.align_tflite_model(str(src), str(dst))
        return dst.read_bytes()


def buffer_misalignment(data: bytes) -> list[int]:
    """Indices of non-empty buffers whose data does not start on a 16-byte boundary."""
    model = tflite_schema().Model.GetRootAsModel(data, 0)
    bad = []
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.DataLength():
            # the vector's first byte: the table's field offset resolved to an absolute position
            start = buf._tab.Vector(buf._tab.Offset(4))
            if start % 16:
                bad.append(i)
    return bad
