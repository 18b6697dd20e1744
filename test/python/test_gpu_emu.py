"""test_gpu_emu.py — device="cuda" on the host emulation of CUDA (build/python-emu/_imgset_emu,
the extension linked against test/gpu/emu, as the C GPU tests are): every batch's DLPack
tensor says CUDA device 0 with the right shape, dtype and strides, and its memory holds exactly
what the CPU loader delivers (gpummap gathered on the device, mmap copied from pinned slots).
Debian's torch has no CUDA, so the capsules are read with ctypes; a real GPU runs the same
path from test/gpu/run.sh."""
import ctypes
import gc
import glob
import os
import sys

import support
from support import ok, tap

imgset = support.import_imgset("test_gpu_emu.py")
EMU_DIR = os.path.join(support.ROOT, "build", "python-emu")
if not glob.glob(os.path.join(EMU_DIR, "_imgset_emu*.so")):
    tap.skip_all("[host emulation] device='cuda' DLPack tensors",
                 "this build has no CUDA parts (no build/python-emu)")
sys.path.insert(0, EMU_DIR)
import _imgset_emu as emu  # noqa: E402


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p)]


get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
get_pointer.restype = ctypes.c_void_p
get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def read_capsule(array):
    """(device type, device id, dtype (code, bits), shape, strides, bytes) of a fresh capsule."""
    capsule = array.__dlpack__(stream=1)
    t = DLManagedTensor.from_address(get_pointer(capsule, b"dltensor")).dl_tensor
    shape = [t.shape[i] for i in range(t.ndim)]
    strides = [t.strides[i] for i in range(t.ndim)]
    count = 1
    for s in shape:
        count *= s
    raw = ctypes.string_at(t.data, count * t.dtype.bits // 8)
    fields = (t.device.device_type, t.device.device_id, (t.dtype.code, t.dtype.bits), shape,
              strides, raw, t.data == array.data_ptr)
    del capsule   # unconsumed: its destructor calls the deleter
    return fields


def check_path(uri, label, want_float, workers):
    opts = dict(batch_size=32, seed=3, want_float=want_float, workers=workers)
    host = imgset._imgset.Loader(uri.replace("gpummap:", "mmap:"), **opts)
    device = emu.Loader(uri, device="cuda", **opts)
    batches = fields_ok = same = 0
    while True:
        want, got = host.next(), device.next()
        if want is None or got is None:
            break
        batches += 1
        dtype, strides_of = ((2, 32), lambda n, h, w, c: [c * h * w, h * w, w, 1]) \
            if want_float else ((1, 8), lambda n, h, w, c: [h * w * c, w * c, c, 1])
        kind, dev, dt, shape, strides, raw, same_ptr = read_capsule(got[0])
        n = shape[0]
        fields_ok += (got[0].__dlpack_device__() == (2, 0) and kind == 2 and dev == 0 and
                      dt == dtype and strides == strides_of(n, 32, 32, 3) and same_ptr and
                      shape == ([n, 3, 32, 32] if want_float else [n, 32, 32, 3]))
        host_raw = read_capsule(want[0])[5]
        labels_dev, labels_host = read_capsule(got[1]), read_capsule(want[1])
        same += raw == host_raw and labels_dev[5] == labels_host[5] and labels_dev[0] == 1
    ok(batches == 22 and fields_ok == batches and same == batches and want is None and got is None,
       "[host emulation, not a GPU] %s, %s, %d workers: %d batches, DLPack device (2, 0) with "
       "shape, dtype and strides right in %d, the CPU loader's bytes in %d"
       % (label, "float32" if want_float else "uint8", workers, batches, fields_ok, same))
    del want, got
    gc.collect()
    ok(device.buffer_counts()[0] == 0, "[host emulation, not a GPU] %s: every device batch "
                                       "given back" % label)


def main():
    with tap.scratch_dir("imgset-pyemu-") as workdir:
        uris = support.make_stores(workdir, kinds=[])
        folder = uris["mmap"][len("mmap:"):]
        check_path("gpummap:" + folder, "gpummap (gathered on the device)", False, 2)
        check_path("gpummap:" + folder, "gpummap (gathered on the device)", True, 0)
        check_path("mmap:" + folder, "mmap --device cuda (pinned + copy)", True, 2)
        check_path("mmap:" + folder, "mmap --device cuda (pinned + copy)", False, 0)
        try:
            emu.Loader(uris["mmap"], device="cuda", cuda_device=3)
            ok(False, "[host emulation, not a GPU] a missing CUDA device number is refused")
        except emu.Error as e:
            ok("3" in str(e), "[host emulation, not a GPU] a missing CUDA device number is "
                              "refused: %s" % e)
    tap.finish()


main()
