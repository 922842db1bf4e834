"""Building: MetaSchedule's builder function, and the final Relax build with a database applied."""
from __future__ import annotations

import os
import subprocess
from typing import Any

from tvm_ofa.errors import TvmOfaError


class BuildError(TvmOfaError):
    """TVM could not compile the module for the target."""


def fast_build(mod: Any, target: Any, _params: Any = None) -> Any:
    """MetaSchedule ``f_build`` for CPU targets.

    Same as MetaSchedule's ``default_build`` minus ``import tvm.s_tir.tensor_intrin``: that import
    registers CUDA/ROCm/Hexagon/Arm intrinsics and takes ~48 s here, which the builder pays in
    every fresh worker, so every batch hit the 30 s timeout. Lowers through
    :mod:`tvm_ofa.compiler.tir_pipeline`, as :func:`build` does.
    """
    import tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    from tvm_ofa.compiler import tir_pipeline

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    # the pipeline of the final build, so that a trial times the code the artifact will run
    return tvm.tirx.build(mod, target=target, pipeline=tir_pipeline.register())


def apply_database(mod: Any, target: Any, database: Any | None) -> Any:
    """The Relax module with the tuned schedules of ``database`` in place of its fused functions.

    For a prepacked lowering (``Lowering(prepack=True)``) the schedules' weight-layout
    blocks become separate functions of the bound weights (``..._prepacked`` calls the packed
    weights), which ``FoldConstant`` runs once, here, instead of on every call.

    Parameters
    ----------
    mod : tvm.IRModule
        From :func:`tvm_ofa.compiler.lower.lower_module`.
    target : tvm.target.Target
    database : tvm.s_tir.meta_schedule.Database or None
        Workloads without a record keep TVM's default schedule.

    Returns
    -------
    tvm.IRModule
    """
    import tvm
    from tvm import relax

    if database is not None:
        with target, database, tvm.transform.PassContext(opt_level=3):
            mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
    if any("layout_free_buffers" in (f.attrs or {}) for _, f in mod.functions_items()):
        mod = tvm.transform.Sequential([relax.transform.SplitLayoutRewritePreproc(),
                                        relax.transform.FoldConstant()])(mod)
    return mod


_GPU_KINDS = ("cuda", "rocm", "vulkan", "metal", "opencl")


def default_gpu_schedules(mod: Any, target: Any) -> Any:
    """``mod`` with every PrimFunc that has no schedule yet given dlight's default GPU schedule.

    TVM's own pass with the rules of its CUDA pipeline, in their order (matmul, GEMV, reduction,
    general reduction, fallback), except that a rule that raises on a function counts as not
    applicable: in TVM 0.27 the GEMV rule's analysis asserts on some of the supernet's 1x1
    convolutions, which made every untuned GPU build fail. A GPU kernel needs a thread binding to
    compile at all, so untuned workloads cannot keep TVM's plain loop nest as on CPUs.
    """
    from tvm.s_tir import dlight as dl

    class Tolerant(dl.ScheduleRule):
        def __init__(self, rule: Any) -> None:
            self.rule = rule

        def apply(self, func: Any, target: Any, tunable: bool) -> Any:
            try:
                return self.rule.apply(func, target, tunable)
            except Exception:  # noqa: BLE001 - the rule cannot analyse this function
                return None

    rules = [dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(),
             dl.gpu.Fallback()]
    with target:
        return dl.ApplyDefaultSchedule(*[Tolerant(r) for r in rules])(mod)


# Build-time stand-in for the CUDA driver on a machine without one: the symbols TVM 0.27's
# libtvm_runtime_cuda.so imports from libcuda.so.1, every call failing. It only lets that library
# load, so that TVM compiles the kernels (nvcc) into the artifact instead of shipping source.
_DRIVER_STUB_C = r"""
typedef int CUresult;
#define TVM_OFA_NO_DRIVER 100 /* CUDA_ERROR_NO_DEVICE */
CUresult cuGetErrorName(CUresult e, const char** s) { (void)e; *s = "CUDA_ERROR_NO_DEVICE"; return 0; }
CUresult cuGetErrorString(CUresult e, const char** s) {
  (void)e; *s = "no CUDA driver here (tvm-ofa build-time stub)"; return 0;
}
CUresult cuDeviceGetName() { return TVM_OFA_NO_DRIVER; }
CUresult cuFuncSetAttribute() { return TVM_OFA_NO_DRIVER; }
CUresult cuLaunchKernelEx() { return TVM_OFA_NO_DRIVER; }
CUresult cuModuleGetFunction() { return TVM_OFA_NO_DRIVER; }
CUresult cuModuleLoadData() { return TVM_OFA_NO_DRIVER; }
CUresult cuModuleUnload() { return TVM_OFA_NO_DRIVER; }
CUresult cuTensorMapEncodeTiled() { return TVM_OFA_NO_DRIVER; }
"""


def _driver_stub() -> str:
    """Path of the stub ``libcuda.so.1``, compiled once into the user's cache."""
    import shutil
    import tempfile
    from pathlib import Path

    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tvm-ofa" / "cuda-driver-stub"
    lib = root / "libcuda.so.1"
    if not lib.exists():
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise OSError("no C compiler for the CUDA driver stub")
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / "stub.c", Path(tmp) / "libcuda.so.1"
            src.write_text(_DRIVER_STUB_C)
            subprocess.run([cc, "-shared", "-fPIC", "-O1", "-Wl,-soname,libcuda.so.1", "-o", str(out),
                            str(src)], check=True, capture_output=True)
            os.replace(out, lib)
    return str(lib)


def cuda_kernels_compiled() -> bool:
    """Whether TVM's CUDA runtime is loaded, so that a CUDA build compiles its kernels (fatbin)
    instead of keeping their source for the loader to compile (which needs TVM's Python and nvcc
    wherever the library is loaded)."""
    import tvm

    return tvm.get_global_func("ffi.Module.create.cuda", allow_missing=True) is not None


def _cuda_compiler() -> None:
    """Get CUDA kernels compiled at build time, also on a machine without the CUDA driver.

    TVM 0.27 hands the kernels' source to its CUDA runtime library, which compiles them through
    ``tvm_callback_cuda_compile`` (``tvm.support.nvcc``; nvcc unless NVRTC's Python bindings
    exist). Where that library cannot load (no ``libcuda.so.1``), the build keeps the source and
    the artifact fails to load anywhere without TVM's Python (``fmt=='cuda' requires
    tvm_callback_cuda_compile``, seen running the C++ runner on an H200). So that library is
    loaded here, against a stub driver when there is no real one.
    """
    import ctypes
    import importlib
    import importlib.util
    import shutil
    from pathlib import Path

    importlib.import_module("tvm.support.nvcc")  # registers tvm_callback_cuda_compile

    if "TVM_CUDA_COMPILE_MODE" not in os.environ:
        try:
            nvrtc = importlib.util.find_spec("cuda.bindings") is not None
        except ModuleNotFoundError:
            nvrtc = False
        if not nvrtc:
            os.environ["TVM_CUDA_COMPILE_MODE"] = "nvcc"
    if os.environ["TVM_CUDA_COMPILE_MODE"] == "nvcc" and shutil.which("nvcc") is None:
        raise BuildError("building for cuda needs the CUDA toolkit's nvcc on PATH "
                         "(or NVRTC's Python bindings: pip install cuda-python)")
    if cuda_kernels_compiled():
        return
    try:
        try:
            ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_GLOBAL)
        except OSError:
            ctypes.CDLL(_driver_stub(), mode=ctypes.RTLD_GLOBAL)
        from tvm.base import _LOADED_LIBS
        from tvm_ffi.libinfo import load_lib_ctypes

        runtime_dir = Path(_LOADED_LIBS["tvm_runtime"]._name).resolve().parent
        _LOADED_LIBS["tvm_runtime_cuda"] = load_lib_ctypes(
            package="tvm", target_name="tvm_runtime_cuda", extra_lib_paths=[runtime_dir],
            mode="RTLD_LOCAL")
    except (OSError, RuntimeError, subprocess.CalledProcessError):
        pass  # e.g. no libcudart here: the build keeps the source (cuda_kernels_compiled says so)


def build(mod: Any, target: Any, database: Any | None = None) -> Any:
    """Compile a fused Relax module, applying the tuned schedules of ``database`` if given
    (parameters as :func:`apply_database`; workloads without a record fall back to TVM's
    default schedule).

    Returns
    -------
    tvm.relax.VMExecutable
    """
    import tvm

    from tvm_ofa.compiler import tir_pipeline

    mod = apply_database(mod, target, database)
    if target.kind.name == "cuda":
        _cuda_compiler()
    try:
        if target.kind.name in _GPU_KINDS:
            mod = default_gpu_schedules(mod, target)
        # the target is current for compile_cuda, which takes the arch (sm_90) from it
        with target, tvm.transform.PassContext(opt_level=3):
            return tvm.compile(mod, target=target, tir_pipeline=tir_pipeline.register())
    except Exception as exc:  # TVM's errors are pages long: keep the last line
        lines = str(exc).strip().splitlines()
        raise BuildError(f"building for {target.kind.name} failed: "
                         f"{lines[-1] if lines else type(exc).__name__}") from exc
