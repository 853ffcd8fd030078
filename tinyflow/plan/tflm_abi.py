"""Sizes of TFLM's own structures in the two builds tinyflow plans for: the host wheel and a 32-bit MCU.

Measured by compiling TFLM's headers (tflite-micro 90b983c) with TF_LITE_STATIC_MEMORY, with g++ -m64 and
g++ -m32 (-malign-double gives the same framework sizes, as on ARM and Xtensa), and cross-checked on the
x86-64 wheel by disassembly and its RecordingMicroAllocator report.

- ``WHEEL``: the ``tflite-micro`` Python package tinyflow pins (0.dev20261023182759): x86-64, built with
  USE_TFLM_COMPRESSION, and its interpreter wrapper uses a RecordingMicroAllocator on an arena that
  ``new[]`` returns 16-aligned and that the recording allocator does not realign.
- ``MCU32``: a 32-bit MCU build as esp-tflite-micro 1.4.0 makes it (TFLM synced 2026-07, no compression)
  behind a plain ``MicroInterpreter(model, resolver, arena, size)`` with a 16-aligned arena.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Abi:
    name: str
    pointer: int
    allocator_objects: tuple[tuple[int, int], ...]  # (size, align) allocated at construction, in order
    builtin_allocator: tuple[int, int]  # MicroBuiltinDataAllocator
    subgraph_allocations: tuple[int, int]  # per subgraph
    eval_tensor: tuple[int, int]  # TfLiteEvalTensor, per tensor
    node_and_registration: tuple[int, int]  # per operator
    scratch_request: tuple[int, int]  # internal::ScratchBufferRequest in the head list
    scratch_handle: tuple[int, int]  # ScratchBufferHandle, per scratch buffer
    allocation_info: tuple[int, int]  # per tensor + scratch buffer, temporary while planning
    tflite_tensor: tuple[int, int]  # TfLiteTensor (temporary in Prepare, persistent for model I/O)
    affine_quantization: tuple[int, int]  # TfLiteAffineQuantization
    resource_variables: tuple[int, int]  # MicroResourceVariables object, MicroResourceVariable entry
    planner_bytes_per_buffer: int  # GreedyMemoryPlanner::per_buffer_size()
    # Overwriting the topmost temporary TfLiteAffineQuantization beyond this many bytes breaks the build
    # (its zero_point pointer); below it a kernel's persistent buffer may land on it harmlessly.
    affine_quantization_live_bytes: int
    compression: bool  # USE_TFLM_COMPRESSION (bigger OpData for conv, fc, concatenation)
    fc_params: tuple[int, int]  # TfLiteFullyConnectedParams differs between the wheel and older trees

    @property
    def head_list_initial(self) -> int:
        return 12 * self.scratch_request[0]  # kMaxScratchBuffersPerOp entries


WHEEL = Abi(
    name="x86-64 tflite-micro wheel (RecordingMicroAllocator, compression on)",
    pointer=8,
    # RecordingSingleArenaBufferAllocator, GreedyMemoryPlanner, RecordingMicroAllocator
    allocator_objects=((104, 8), (72, 8), (272, 8)),
    builtin_allocator=(16, 8),
    subgraph_allocations=(24, 8),
    eval_tensor=(24, 8),
    node_and_registration=(64, 8),
    scratch_request=(16, 8),
    scratch_handle=(8, 8),
    allocation_info=(32, 8),
    tflite_tensor=(64, 8),
    affine_quantization=(24, 8),
    resource_variables=(16, 40),
    planner_bytes_per_buffer=40,
    affine_quantization_live_bytes=16,
    compression=True,
    fc_params=(32, 8),
)

MCU32 = Abi(
    name="32-bit MCU (MicroAllocator, no compression)",
    pointer=4,
    # SingleArenaBufferAllocator, GreedyMemoryPlanner, MicroAllocator
    allocator_objects=((36, 4), (44, 4), (36, 4)),
    builtin_allocator=(8, 4),
    subgraph_allocations=(8, 4),
    eval_tensor=(12, 4),
    node_and_registration=(32, 4),
    scratch_request=(12, 4),
    scratch_handle=(4, 4),
    allocation_info=(24, 4),
    tflite_tensor=(40, 4),
    affine_quantization=(12, 4),
    resource_variables=(12, 20),
    planner_bytes_per_buffer=40,
    affine_quantization_live_bytes=8,
    compression=False,
    fc_params=(16, 4),
)


def abi_for(pointer_bytes: int) -> Abi:
    return WHEEL if pointer_bytes == 8 else MCU32
