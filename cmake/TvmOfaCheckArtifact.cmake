# cmake -DSTAGE=<dir given to tvm-ofa compile --out> -DDIR=<artifact dir> -P TvmOfaCheckArtifact.cmake
#
# Run after `tvm-ofa compile`. The compiler may write model.so + metadata.json straight into
# --out, or into --out/<target>/<arch-id>/ (its artifacts/ layout): take the newest model.so
# found and copy it with its metadata.json to DIR, the fixed place the build and the generated
# header point at. A build must fail here, naming the directory, rather than later in a consumer.
file(GLOB_RECURSE _libs LIST_DIRECTORIES false "${STAGE}/model.so")
set(_best "")
foreach(lib ${_libs})
  get_filename_component(_dir "${lib}" DIRECTORY)
  if(EXISTS "${_dir}/metadata.json")
    if(NOT _best OR "${lib}" IS_NEWER_THAN "${_best}")
      set(_best "${lib}")
    endif()
  endif()
endforeach()
if(NOT _best)
  message(FATAL_ERROR "${STAGE}: tvm-ofa compile wrote no model.so with a metadata.json beside it")
endif()
get_filename_component(_src "${_best}" DIRECTORY)
if(NOT _src STREQUAL DIR)
  file(COPY "${_src}/model.so" "${_src}/metadata.json" DESTINATION "${DIR}")
endif()
# newer than the inputs even when the compiler reused a cached artifact, so make stays quiet
file(TOUCH "${DIR}/model.so" "${DIR}/metadata.json")
