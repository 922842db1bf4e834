# TvmOfa.cmake: use tvm-ofa artifacts from a CMake project.
#
#   find_package(tvm_ofa REQUIRED)      # after `cmake --install` of tvm-ofa (tvm_ofaConfig.cmake)
#   # or, from a checkout: list(APPEND CMAKE_MODULE_PATH /path/to/tvm-ofa/cmake) + include(TvmOfa)
#   tvm_ofa_add_model(NAME mbv3 TARGET host-cpu ARCH arch.json CHECKPOINT ofa.pt)
#   add_executable(app main.cc)
#   target_link_libraries(app PRIVATE mbv3)   # runtime + <mbv3_model.h> + build order
#
# Including this file defines the runtime library target tvm_ofa::model (cpp/tvm_ofa_model.cc,
# linked to the wheel's libtvm_runtime.so) unless the project already has it.
#
# Variables read:
#   TVM_OFA_PYTHON  Python with apache-tvm (and tvm_ofa) installed; see FindTVMRuntime.cmake.
#   TVM_OFA_CLI     the compiler command as a CMake list, run as
#                   <TVM_OFA_CLI> compile --target .. --arch .. [--checkpoint ..] --out <dir> [--no-tune]
#                   Default: the `tvm-ofa` script next to TVM_OFA_PYTHON, else
#                   `<python> -c "...tvm_ofa.cli.main()"` with this repository on sys.path.
include_guard(GLOBAL)

get_filename_component(TVM_OFA_ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
list(APPEND CMAKE_MODULE_PATH "${CMAKE_CURRENT_LIST_DIR}")
find_package(TVMRuntime REQUIRED)

if(NOT TARGET tvm_ofa::model)
  add_library(tvm_ofa_model STATIC "${TVM_OFA_ROOT}/cpp/tvm_ofa_model.cc")
  add_library(tvm_ofa::model ALIAS tvm_ofa_model)
  target_include_directories(tvm_ofa_model PUBLIC "${TVM_OFA_ROOT}/cpp")
  target_compile_features(tvm_ofa_model PUBLIC cxx_std_17)
  set_target_properties(tvm_ofa_model PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_link_libraries(tvm_ofa_model PUBLIC tvm_ofa::tvm_runtime)
endif()

if(NOT TVM_OFA_CLI)
  get_filename_component(_tvm_ofa_pybin "${TVM_OFA_PYTHON}" DIRECTORY)
  find_program(TVM_OFA_CLI_SCRIPT tvm-ofa HINTS "${_tvm_ofa_pybin}" NO_DEFAULT_PATH)
  if(TVM_OFA_CLI_SCRIPT)
    set(_cli "${TVM_OFA_CLI_SCRIPT}")
  else()
    # not pip-installed: run the package from this checkout
    set(_cli "${TVM_OFA_PYTHON}" -c
        "import sys; sys.path.insert(0, '${TVM_OFA_ROOT}'); from tvm_ofa.cli import main; sys.exit(main())")
  endif()
  set(TVM_OFA_CLI "${_cli}" CACHE STRING "tvm-ofa command (a CMake list) used by tvm_ofa_add_model")
endif()

# tvm_ofa_add_model(NAME <name> TARGET <target.yaml or shipped name> ARCH <arch.json> [CHECKPOINT <file>]
#                   [OUTPUT_DIR <dir>] [NO_TUNE] [EXTRA_ARGS <arg>...] [DEPENDS <file>...]
#                   [WORKING_DIRECTORY <dir>])
#
# At build time runs `tvm-ofa compile ... --out <OUTPUT_DIR>/tvm-ofa-out` in WORKING_DIRECTORY
# (default: the tvm-ofa checkout, whose tuning_logs/ it then reuses), copies the artifact it
# wrote (directly there or in <target>/<arch-id>/ below) to OUTPUT_DIR (default
# ${CMAKE_CURRENT_BINARY_DIR}/tvm_ofa/<name>), re-running only when an input file changes, and
# defines
#   <name>                INTERFACE library: links tvm_ofa::model, adds the generated header
#                         <name>_model.h (constexpr paths) and orders the compile before users
#   <name>_compile        the custom target that builds the artifact (part of ALL)
#   <name>_MODEL_DIR      variables in the caller's scope: artifact dir, model.so, metadata.json
#   <name>_MODEL_LIBRARY
#   <name>_MODEL_METADATA
function(tvm_ofa_add_model)
  cmake_parse_arguments(ARG "NO_TUNE" "NAME;TARGET;ARCH;CHECKPOINT;OUTPUT_DIR;WORKING_DIRECTORY"
                        "EXTRA_ARGS;DEPENDS" ${ARGN})
  foreach(req NAME TARGET ARCH)
    if(NOT ARG_${req})
      message(FATAL_ERROR "tvm_ofa_add_model: missing ${req}")
    endif()
  endforeach()
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "tvm_ofa_add_model(${ARG_NAME}): unknown arguments ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_NAME MATCHES "^[A-Za-z_][A-Za-z0-9_]*$")
    message(FATAL_ERROR "tvm_ofa_add_model: NAME '${ARG_NAME}' must be a C identifier (it names a header)")
  endif()
  set(name "${ARG_NAME}")

  set(inputs)
  if(ARG_TARGET MATCHES "^[a-z0-9][a-z0-9._-]*$" AND NOT ARG_TARGET MATCHES "\\.ya?ml$")
    set(abs_TARGET "${ARG_TARGET}")  # a shipped target's name: tvm-ofa resolves it
    set(ARG_TARGET)
  endif()
  foreach(kind TARGET ARCH CHECKPOINT)
    if(ARG_${kind})
      get_filename_component(path "${ARG_${kind}}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
      if(NOT EXISTS "${path}")
        message(FATAL_ERROR "tvm_ofa_add_model(${name}): ${kind} file ${path} does not exist")
      endif()
      set(abs_${kind} "${path}")
      list(APPEND inputs "${path}")
    endif()
  endforeach()

  if(ARG_OUTPUT_DIR)
    get_filename_component(out "${ARG_OUTPUT_DIR}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_BINARY_DIR}")
  else()
    set(out "${CMAKE_CURRENT_BINARY_DIR}/tvm_ofa/${name}")
  endif()

  if(ARG_WORKING_DIRECTORY)
    get_filename_component(workdir "${ARG_WORKING_DIRECTORY}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  else()
    set(workdir "${TVM_OFA_ROOT}")
  endif()

  set(cmd ${TVM_OFA_CLI} compile --target "${abs_TARGET}" --arch "${abs_ARCH}")
  if(abs_CHECKPOINT)
    list(APPEND cmd --checkpoint "${abs_CHECKPOINT}")
  endif()
  # the compiler writes under a staging dir; the check step copies the artifact to ${out}
  set(stage "${out}/tvm-ofa-out")
  list(APPEND cmd --out "${stage}")
  if(ARG_NO_TUNE)
    list(APPEND cmd --no-tune)
  endif()
  list(APPEND cmd ${ARG_EXTRA_ARGS})

  add_custom_command(
    OUTPUT "${out}/model.so" "${out}/metadata.json"
    COMMAND "${CMAKE_COMMAND}" -E make_directory "${stage}"
    COMMAND ${cmd}
    # finds the artifact in either --out layout, copies it to ${out}, or fails with one line
    COMMAND "${CMAKE_COMMAND}" -DSTAGE=${stage} -DDIR=${out}
            -P "${TVM_OFA_ROOT}/cmake/TvmOfaCheckArtifact.cmake"
    DEPENDS ${inputs} ${ARG_DEPENDS}
    # relative paths of the compiler (tuning_logs/) resolve here: by default the tvm-ofa
    # checkout, so builds reuse its tuning database instead of retuning in every build tree
    WORKING_DIRECTORY "${workdir}"
    COMMENT "tvm-ofa compile ${name} -> ${out}"
    VERBATIM)
  add_custom_target(${name}_compile ALL DEPENDS "${out}/model.so" "${out}/metadata.json")

  # the header holds paths known now, at configure time; the artifact itself comes at build time
  set(header_dir "${CMAKE_CURRENT_BINARY_DIR}/tvm_ofa_include/${name}")
  string(TOUPPER "${name}" upper)
  file(CONFIGURE OUTPUT "${header_dir}/${name}_model.h" CONTENT
"// Generated by tvm_ofa_add_model(${name}); do not edit.
#pragma once
#define ${upper}_MODEL_DIR \"${out}\"
namespace tvm_ofa_models {
namespace ${name} {
// Artifact directory for tvm_ofa::Model(kModelDir): model.so + metadata.json.
inline constexpr const char kModelDir[] = \"${out}\";
inline constexpr const char kModelLibrary[] = \"${out}/model.so\";
inline constexpr const char kMetadata[] = \"${out}/metadata.json\";
}  // namespace ${name}
}  // namespace tvm_ofa_models
" @ONLY)

  add_library(${name} INTERFACE)
  target_include_directories(${name} INTERFACE "${header_dir}")
  target_link_libraries(${name} INTERFACE tvm_ofa::model)
  # followed transitively: anything linking <name> is built after the artifact
  add_dependencies(${name} ${name}_compile)

  set(${name}_MODEL_DIR "${out}" PARENT_SCOPE)
  set(${name}_MODEL_LIBRARY "${out}/model.so" PARENT_SCOPE)
  set(${name}_MODEL_METADATA "${out}/metadata.json" PARENT_SCOPE)
endfunction()
