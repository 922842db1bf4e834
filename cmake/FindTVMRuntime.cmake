# FindTVMRuntime.cmake: locate the TVM runtime shipped in the apache-tvm / apache-tvm-ffi wheels.
#
# The wheel's own tvmConfig.cmake includes a tvmTargets.cmake that the wheel does not ship, so
# we ask Python where the packages are instead (without importing tvm: that takes ~5 s).
#
# Python used, first match wins:
#   TVM_OFA_PYTHON (cache/env), Python_EXECUTABLE, <repo>/.venv/bin/python, find_package(Python).
# Everything can also be given directly: TVMRuntime_TVM_DIR / TVMRuntime_FFI_DIR (the package dirs).
#
# Defines:
#   TVMRuntime_FOUND, TVMRuntime_INCLUDE_DIRS, TVMRuntime_LIBRARIES, TVMRuntime_PYTHON
#   imported targets tvm_ofa::tvm_ffi and tvm_ofa::tvm_runtime (the latter links the former)
include_guard(GLOBAL)

get_filename_component(_tvm_ofa_repo "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)

if(NOT TVM_OFA_PYTHON AND DEFINED ENV{TVM_OFA_PYTHON})
  set(TVM_OFA_PYTHON "$ENV{TVM_OFA_PYTHON}")
endif()
if(NOT TVM_OFA_PYTHON)
  if(Python_EXECUTABLE)
    set(_py "${Python_EXECUTABLE}")
  elseif(EXISTS "${_tvm_ofa_repo}/.venv/bin/python")
    set(_py "${_tvm_ofa_repo}/.venv/bin/python")
  else()
    find_package(Python COMPONENTS Interpreter QUIET)
    set(_py "${Python_EXECUTABLE}")
  endif()
  set(TVM_OFA_PYTHON "${_py}" CACHE FILEPATH "Python interpreter that has apache-tvm installed")
endif()
set(TVMRuntime_PYTHON "${TVM_OFA_PYTHON}")

# a different Python than the one the cached dirs came from: ask again
if(DEFINED _TVMRuntime_DIRS_FROM AND NOT _TVMRuntime_DIRS_FROM STREQUAL TVM_OFA_PYTHON)
  foreach(v TVMRuntime_TVM_DIR TVMRuntime_FFI_DIR TVMRuntime_RUNTIME_LIBRARY TVMRuntime_FFI_LIBRARY
            TVMRuntime_FFI_INCLUDE_DIR TVMRuntime_DLPACK_INCLUDE_DIR TVMRuntime_INCLUDE_DIR)
    unset(${v} CACHE)
  endforeach()
endif()

if(NOT TVMRuntime_TVM_DIR OR NOT TVMRuntime_FFI_DIR)
  if(NOT TVM_OFA_PYTHON)
    message(FATAL_ERROR "FindTVMRuntime.cmake: no Python found; set -DTVM_OFA_PYTHON=/path/to/python")
  endif()
  execute_process(
    COMMAND "${TVM_OFA_PYTHON}" -c
      "import importlib.util as u, sys; s = [u.find_spec(m) for m in ('tvm', 'tvm_ffi')]; sys.exit('no module tvm or tvm_ffi') if None in s else print(';'.join(x.submodule_search_locations[0] for x in s))"
    OUTPUT_VARIABLE _dirs OUTPUT_STRIP_TRAILING_WHITESPACE
    ERROR_VARIABLE _err RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    string(REGEX REPLACE "\n" " | " _err "${_err}")
    message(FATAL_ERROR "FindTVMRuntime.cmake: ${TVM_OFA_PYTHON} cannot find the tvm and tvm_ffi packages "
                        "(pip install apache-tvm, or set -DTVM_OFA_PYTHON): ${_err}")
  endif()
  list(GET _dirs 0 _tvm_dir)
  list(GET _dirs 1 _ffi_dir)
  set(TVMRuntime_TVM_DIR "${_tvm_dir}" CACHE PATH "the installed tvm Python package")
  set(TVMRuntime_FFI_DIR "${_ffi_dir}" CACHE PATH "the installed tvm_ffi Python package")
  set(_TVMRuntime_DIRS_FROM "${TVM_OFA_PYTHON}" CACHE INTERNAL "")
endif()

find_library(TVMRuntime_RUNTIME_LIBRARY NAMES tvm_runtime PATHS "${TVMRuntime_TVM_DIR}/lib" NO_DEFAULT_PATH)
find_library(TVMRuntime_FFI_LIBRARY NAMES tvm_ffi PATHS "${TVMRuntime_FFI_DIR}/lib" NO_DEFAULT_PATH)
find_path(TVMRuntime_FFI_INCLUDE_DIR tvm/ffi/function.h PATHS "${TVMRuntime_FFI_DIR}/include" NO_DEFAULT_PATH)
find_path(TVMRuntime_DLPACK_INCLUDE_DIR dlpack/dlpack.h
          PATHS "${TVMRuntime_FFI_DIR}/include" "${TVMRuntime_FFI_DIR}/3rdparty/dlpack/include" NO_DEFAULT_PATH)
find_path(TVMRuntime_INCLUDE_DIR tvm/runtime/c_backend_api.h PATHS "${TVMRuntime_TVM_DIR}/include" NO_DEFAULT_PATH)

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(TVMRuntime
  REQUIRED_VARS TVMRuntime_RUNTIME_LIBRARY TVMRuntime_FFI_LIBRARY TVMRuntime_FFI_INCLUDE_DIR
                TVMRuntime_DLPACK_INCLUDE_DIR TVMRuntime_INCLUDE_DIR)

if(TVMRuntime_FOUND)
  set(TVMRuntime_INCLUDE_DIRS "${TVMRuntime_INCLUDE_DIR}" "${TVMRuntime_FFI_INCLUDE_DIR}" "${TVMRuntime_DLPACK_INCLUDE_DIR}")
  list(REMOVE_DUPLICATES TVMRuntime_INCLUDE_DIRS)
  set(TVMRuntime_LIBRARIES "${TVMRuntime_RUNTIME_LIBRARY}" "${TVMRuntime_FFI_LIBRARY}")
  if(NOT TARGET tvm_ofa::tvm_ffi)
    find_package(Threads REQUIRED)
    add_library(tvm_ofa::tvm_ffi SHARED IMPORTED GLOBAL)
    set_target_properties(tvm_ofa::tvm_ffi PROPERTIES
      IMPORTED_LOCATION "${TVMRuntime_FFI_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${TVMRuntime_FFI_INCLUDE_DIR};${TVMRuntime_DLPACK_INCLUDE_DIR}"
      INTERFACE_COMPILE_FEATURES cxx_std_17)
    add_library(tvm_ofa::tvm_runtime SHARED IMPORTED GLOBAL)
    # libtvm_runtime.so finds libtvm_ffi.so by soname only (no RUNPATH of its own): linking
    # both directly lets the executable's RUNPATH load it first.
    set_target_properties(tvm_ofa::tvm_runtime PROPERTIES
      IMPORTED_LOCATION "${TVMRuntime_RUNTIME_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${TVMRuntime_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "tvm_ofa::tvm_ffi;Threads::Threads;${CMAKE_DL_LIBS}")
  endif()
endif()
